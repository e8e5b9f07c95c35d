"""A FUSE filesystem that loses what was never synced: a power cut for tests.

The mount shows one flat folder backed by a real one. Reads see every write,
but a write reaches the backing folder only when its file is synced:

- file data (in 4 KiB blocks) and size on ``fsync`` or ``fdatasync`` of that file;
- directory entries (create, rename, unlink) on ``fsync`` of the folder, or on
  ``fsync`` (not ``fdatasync``) of the file they name. This is stricter than
  lazyfs, which applies entries at once: a missing directory sync shows up.

A *power cut* comes at the K-th write-type operation after ``arm`` (the write,
truncate, create, unlink, rename or sync that would have been the K-th is not
done), or at once on ``cut``. In ``drop`` mode everything unsynced is lost; in
``torn`` mode a random subset of the unsynced blocks and size changes of each
durably named file reaches the backing folder, the rest is lost. From then on
every operation fails with EIO, and the processes named by ``victim`` (and any
caller that descends from one) are killed with SIGKILL: the writer dies with
the power. Mounting again over the same backing folder is the restart.

Run as its own process (the writer must not share it)::

    python scripts/lossyfs.py BACKING MOUNTPOINT

It prints ``ready`` once mounted and ``cut N`` when the power went (N: write-type
operations since ``arm``), and reads commands on stdin, one a line:
``arm K drop|torn SEED``, ``cut drop|torn SEED``, ``victim PID``, ``stats`` (answered
by ``stats FSYNCS WRITES``: syncs and writes since the mount). Unmount with
``fusermount3 -u MOUNTPOINT``. From Python, :class:`LossyMount` does all of this.

A slow disk: ``--fsync-delay SECONDS`` makes every ``fsync``, ``fdatasync`` and
folder sync take that long more (the filesystem serves one request at a time,
as a disk's flush queue would), the way network block storage or a laptop's
SSD under load flushes; benchmarks measure many writers against it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import random
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["BLOCK", "CUT_MODES", "LossyFS", "LossyMount", "fuse_unavailable"]

BLOCK = 4096
#: libfuse 3's capability bit for the kernel's write-back cache.
FUSE_CAP_WRITEBACK_CACHE = 1 << 16
CUT_MODES = ("drop", "torn")
SCRIPT = Path(__file__).resolve()
#: Backing names the filesystem uses for a moment while it moves entries around.
MOVING_PREFIX = ".lossyfs-moving-"
F = TypeVar("F", bound=Callable[..., Any])


class Node:
    """One file: its volatile name and content, and where its durable content lives."""

    __slots__ = (
        "ctime",
        "dirty",
        "dname",
        "durable_size",
        "fd",
        "floor",
        "mode",
        "mtime",
        "name",
        "opens",
        "size",
    )

    def __init__(self, name: str | None, mode: int) -> None:
        """Make a file named ``name`` that has nothing durable yet."""
        self.name = name  # the name reads see (None once unlinked)
        self.dname: str | None = None  # the name in the backing folder (None: none)
        self.fd: int | None = None  # the backing file, open even after it is unlinked
        self.size = 0  # the size reads see
        self.durable_size = 0  # the backing file's size
        # Durable bytes at or past ``floor`` read as zeros: a shrink not yet synced.
        self.floor = 0
        self.dirty: dict[int, bytearray] = {}  # blocks written since the last sync
        self.opens = 0
        self.mode = mode
        self.mtime = self.ctime = time.time_ns()


class PowerCut(OSError):
    """The power went: this and every later operation fails with EIO."""

    def __init__(self) -> None:
        """Fail with EIO, as a disk without power would."""
        super().__init__(errno.EIO, "power cut")


class LossyFS:
    """The filesystem's operations (mfusepy's ``Operations`` protocol), over ``backing``."""

    use_ns = True
    # Data operations get the file handle, never a path: an unlinked file stays usable.
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(
        self, backing: Path, *, events: Callable[[str], None] = print, fsync_delay: float = 0.0
    ) -> None:
        """Load the backing folder's files as the durable (and current) state.

        ``fsync_delay``: seconds every sync takes on top of its work (a slow disk).
        """
        self.backing = backing
        self.events = events
        self.fsync_delay = fsync_delay
        self.fsyncs = 0  # syncs done since the mount (file and folder)
        self.writes = 0  # write calls since the mount
        self.mutex = threading.RLock()
        self.names: dict[str, Node] = {}
        self.durable: dict[str, Node] = {}
        self.handles: dict[int, Node] = {}
        self.next_handle = 1
        self.dead = False
        self.countdown: int | None = None  # write-type operations left before the cut
        self.counted = 0
        self.cut_mode = "drop"
        self.rng = random.Random(0)
        self.victims: set[int] = set()
        for entry in sorted(os.listdir(backing)):
            path = backing / entry
            if entry.startswith(MOVING_PREFIX):
                path.unlink()  # left by a filesystem process that was itself killed
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            node = Node(entry, stat.S_IMODE(info.st_mode))
            node.dname = entry
            node.fd = os.open(path, os.O_RDWR)
            node.size = node.durable_size = node.floor = info.st_size
            self.names[entry] = self.durable[entry] = node

    # -- control --------------------------------------------------------------------------------------------

    def arm(self, count: int, mode: str, seed: int) -> None:
        """Cut the power at the ``count``-th write-type operation from now."""
        with self.mutex:
            self.countdown, self.counted, self.cut_mode = count, 0, mode
            self.rng = random.Random(seed)

    def cut(self, mode: str, seed: int) -> None:
        """Cut the power now."""
        with self.mutex:
            if not self.dead:
                self.cut_mode, self.rng = mode, random.Random(seed)
                self._power_off(None)

    def _power_off(self, caller: int | None) -> None:
        self.dead = True
        if self.cut_mode == "torn":
            for node in self._nodes():
                self._tear(node)
        for pid in self._doomed(caller):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.events(f"cut {self.counted}")

    def _doomed(self, caller: int | None) -> set[int]:
        doomed = set(self.victims)
        if caller is not None and caller > 1:
            process = _thread_group(caller)
            if process is not None and process != os.getpid() and _descends_from(process, self.victims):
                doomed.add(process)
        return doomed

    def _tear(self, node: Node) -> None:
        """Write a random subset of the node's unsynced blocks and size change to its backing file."""
        if node.fd is None:
            return
        if self.rng.random() < 0.5:
            target, floor = node.size, node.floor
        else:
            target, floor = node.durable_size, node.durable_size
        if floor < node.durable_size:
            os.ftruncate(node.fd, floor)
        os.ftruncate(node.fd, target)
        for index, block in node.dirty.items():
            start = index * BLOCK
            if start < target and self.rng.random() < 0.5:
                os.pwrite(node.fd, block[: min(BLOCK, target - start)], start)

    def _write_op(self) -> None:
        """Count one write-type operation; cut the power if it is the armed one."""
        if self.dead:
            raise PowerCut
        if self.countdown is None:
            return
        self.counted += 1
        if self.counted >= self.countdown:
            self.countdown = None
            from mfusepy import fuse_get_context

            self._power_off(fuse_get_context()[2])
            raise PowerCut

    def _alive(self) -> None:
        if self.dead:
            raise PowerCut

    # -- blocks ---------------------------------------------------------------------------------------------

    def _durable_block(self, node: Node, index: int) -> bytes:
        start = index * BLOCK
        limit = min(node.floor, node.durable_size)
        if node.fd is None or start >= limit:
            return bytes(BLOCK)
        data = os.pread(node.fd, min(BLOCK, limit - start), start)
        return data + bytes(BLOCK - len(data))

    def _block(self, node: Node, index: int) -> bytearray:
        block = node.dirty.get(index)
        if block is None:
            block = bytearray(self._durable_block(node, index))
            node.dirty[index] = block
        return block

    def _read(self, node: Node, size: int, offset: int) -> bytes:
        end = min(node.size, offset + size)
        parts = []
        position = offset
        while position < end:
            index, within = divmod(position, BLOCK)
            block = node.dirty.get(index)
            data = block if block is not None else self._durable_block(node, index)
            take = min(BLOCK - within, end - position)
            parts.append(bytes(data[within : within + take]))
            position += take
        return b"".join(parts)

    def _write(self, node: Node, data: bytes, offset: int) -> None:
        position, view = offset, memoryview(data)
        while view:
            index, within = divmod(position, BLOCK)
            take = min(BLOCK - within, len(view))
            self._block(node, index)[within : within + take] = view[:take]
            view, position = view[take:], position + take
        node.size = max(node.size, offset + len(data))
        node.mtime = time.time_ns()

    def _truncate(self, node: Node, length: int) -> None:
        if length < node.size:
            for index in [i for i in node.dirty if i * BLOCK >= length]:
                del node.dirty[index]
            index, within = divmod(length, BLOCK)
            if within:
                block = self._block(node, index)
                block[within:] = bytes(BLOCK - within)
            node.floor = min(node.floor, length)
        node.size = length
        node.mtime = time.time_ns()

    def _sync_data(self, node: Node) -> None:
        if node.fd is None:
            return  # no durable name: nothing a restart could find
        if node.floor < node.durable_size:
            os.ftruncate(node.fd, node.floor)
        for index, block in sorted(node.dirty.items()):
            start = index * BLOCK
            if start < node.size:
                os.pwrite(node.fd, block[: min(BLOCK, node.size - start)], start)
        os.ftruncate(node.fd, node.size)
        node.dirty.clear()
        node.durable_size = node.floor = node.size

    # -- directory entries ----------------------------------------------------------------------------------

    def _sync_entries(self, nodes: list[Node]) -> None:
        """Make the backing folder name ``nodes`` as the mount does.

        The set grows by every node whose durable name one of them takes over:
        a rename is one change of both names, never half of one.
        """
        todo = {id(n): n for n in nodes}
        queue = list(todo.values())
        while queue:
            node = queue.pop()
            occupant = self.durable.get(node.name) if node.name is not None else None
            if occupant is not None and occupant is not node and id(occupant) not in todo:
                todo[id(occupant)] = occupant
                queue.append(occupant)
        moving = [n for n in todo.values() if n.dname is not None and n.dname != n.name]
        for node in moving:
            assert node.dname is not None
            del self.durable[node.dname]
            if node.name is None:
                os.unlink(self.backing / node.dname)
                node.dname = None
            else:
                temporary = f"{MOVING_PREFIX}{id(node)}"
                os.rename(self.backing / node.dname, self.backing / temporary)
                node.dname = temporary
        for node in todo.values():
            if node.name is None or node.dname == node.name:
                continue
            if node.dname is not None:
                os.rename(self.backing / node.dname, self.backing / node.name)
            else:
                node.fd = os.open(self.backing / node.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, node.mode)
                node.durable_size = node.floor = 0
            node.dname = node.name
            self.durable[node.name] = node
        for node in todo.values():
            self._forget_if_unused(node)

    def _forget_if_unused(self, node: Node) -> None:
        if node.name is None and node.dname is None and node.opens == 0 and node.fd is not None:
            os.close(node.fd)
            node.fd = None

    def _nodes(self) -> list[Node]:
        """Return every file the filesystem knows: named, durably named or open."""
        every = [*self.names.values(), *self.durable.values(), *self.handles.values()]
        return list({id(n): n for n in every}.values())

    # -- lookups --------------------------------------------------------------------------------------------

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        name = _name(path)
        node = self.names.get(name) if name else None
        if node is None:
            raise OSError(errno.ENOENT, "no such file")
        return node

    # -- the operations mfusepy calls -----------------------------------------------------------------------

    def init(self, _path: str) -> None:
        """Say the mount is up."""
        self.events("ready")

    def init_with_config(self, conn_info: Any, _config: Any) -> None:
        """Mount; a slow disk lets the kernel gather writes in its page cache until a sync.

        A disk's writes land in the page cache and only its flush is slow; here
        every write would cross into this process otherwise, which a real disk
        does not charge. Without a delay (the power-cut tests) every write is
        seen as it happens, and a cut can fall between any two.
        """
        if self.fsync_delay and conn_info is not None:
            conn_info.want |= conn_info.capable & FUSE_CAP_WRITEBACK_CACHE
        self.init("/")

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        """Return a file's or the root's attributes."""
        with self.mutex:
            self._alive()
            now = time.time_ns()
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_mtime": now, "st_ctime": now}
            node = self._node(path, fh)
            return {
                "st_mode": stat.S_IFREG | node.mode,
                "st_nlink": 1 if node.name is not None else 0,
                "st_size": node.size,
                "st_blocks": (node.size + 511) // 512,
                "st_mtime": node.mtime,
                "st_ctime": node.ctime,
                "st_atime": node.mtime,
                "st_uid": os.getuid(),
                "st_gid": os.getgid(),
            }

    def readdir(self, path: str | None, _fh: int) -> list[str]:
        """List the root folder."""
        with self.mutex:
            self._alive()
            if path not in (None, "/"):
                raise OSError(errno.ENOTDIR, "flat filesystem")
            return [".", "..", *sorted(self.names)]

    def access(self, path: str, _amode: int) -> int:
        """Allow every access to what exists."""
        with self.mutex:
            self._alive()
            if path != "/":
                self._node(path)
            return 0

    def statfs(self, _path: str) -> dict[str, int]:
        """Report the backing folder's filesystem."""
        self._alive()
        info = os.statvfs(self.backing)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")
        return {key: getattr(info, key) for key in keys}

    def _handle(self, node: Node) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = node
        node.opens += 1
        return handle

    def open(self, path: str, _flags: int) -> int:
        """Open an existing file."""
        with self.mutex:
            self._alive()
            return self._handle(self._node(path))

    def create(self, path: str, mode: int, _flags: int = 0) -> int:
        """Create a file: its entry is volatile until synced."""
        with self.mutex:
            self._write_op()
            name = _name(path)
            node = self.names.get(name)
            if node is None:
                node = Node(name, stat.S_IMODE(mode))
                self.names[name] = node
            return self._handle(node)

    def read(self, _path: str | None, size: int, offset: int, fh: int) -> bytes:
        """Read what the mount holds, synced or not."""
        with self.mutex:
            self._alive()
            return self._read(self.handles[fh], size, offset)

    def write(self, _path: str | None, data: bytes, offset: int, fh: int) -> int:
        """Write into the volatile blocks."""
        with self.mutex:
            self._write_op()
            self._write(self.handles[fh], data, offset)
            self.writes += 1
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        """Change a file's size (volatile until synced)."""
        with self.mutex:
            self._write_op()
            self._truncate(self._node(path, fh), length)
            return 0

    def fsync(self, _path: str | None, datasync: int, fh: int) -> int:
        """Make the file's data durable and, for fsync (not fdatasync), its entry too."""
        with self.mutex:
            self._write_op()
            node = self.handles[fh]
            if not datasync:
                self._sync_entries([node])
            self._sync_data(node)
            self._synced()
            return 0

    def _synced(self) -> None:
        """Count a sync, and take the slow disk's time for it."""
        self.fsyncs += 1
        if self.fsync_delay:
            time.sleep(self.fsync_delay)

    def opendir(self, _path: str) -> int:
        """Open the root folder."""
        self._alive()
        return 0

    def releasedir(self, _path: str | None, _fh: int) -> int:
        """Close the root folder."""
        return 0

    def fsyncdir(self, _path: str | None, _datasync: int, _fh: int) -> int:
        """Make every entry of the folder durable (not the files' data)."""
        with self.mutex:
            self._write_op()
            nodes = {id(n): n for n in [*self.names.values(), *self.durable.values()]}
            self._sync_entries(list(nodes.values()))
            self._synced()
            return 0

    def flush(self, _path: str | None, _fh: int) -> int:
        """Nothing to do on close: data stays volatile until synced."""
        self._alive()
        return 0

    def release(self, _path: str | None, fh: int) -> int:
        """Drop a file handle."""
        with self.mutex:
            node = self.handles.pop(fh, None)
            if node is not None:
                node.opens -= 1
                self._forget_if_unused(node)
            return 0

    def unlink(self, path: str) -> int:
        """Remove a name (volatile until synced); open handles keep the file."""
        with self.mutex:
            self._write_op()
            node = self._node(path)
            del self.names[_name(path)]
            node.name = None
            self._forget_if_unused(node)
            return 0

    def rename(self, old: str, new: str) -> int:
        """Rename, replacing the target (volatile until synced)."""
        with self.mutex:
            self._write_op()
            node = self._node(old)
            replaced = self.names.get(_name(new))
            if replaced is node:
                return 0
            del self.names[_name(old)]
            if replaced is not None:
                replaced.name = None
                self._forget_if_unused(replaced)
            node.name = _name(new)
            self.names[node.name] = node
            return 0

    def chmod(self, path: str | None, mode: int) -> int:
        """Change the mode (kept in memory only)."""
        with self.mutex:
            self._alive()
            if path is not None:  # fchmod comes without a path: metadata is not modelled
                self._node(path).mode = stat.S_IMODE(mode)
            return 0

    def chown(self, path: str | None, _uid: int, _gid: int) -> int:
        """Accept and ignore a change of owner (the mount has one owner)."""
        with self.mutex:
            self._alive()
            return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        """Set the modification time (kept in memory only)."""
        with self.mutex:
            self._alive()
            if path is not None:
                self._node(path).mtime = times[1] if times else time.time_ns()
            return 0

    def mkdir(self, _path: str, _mode: int) -> int:
        """Refuse: the filesystem is one flat folder."""
        raise OSError(errno.EPERM, "flat filesystem")

    def destroy(self, _path: str) -> None:
        """Close the backing files at unmount."""
        with self.mutex:
            for node in self._nodes():
                if node.fd is not None:
                    os.close(node.fd)
                    node.fd = None


def _name(path: str | None) -> str:
    if path is None or not path.startswith("/") or "/" in path[1:]:
        raise OSError(errno.ENOENT, "flat filesystem")
    return path[1:]


def _thread_group(tid: int) -> int | None:
    """Return the process a thread id belongs to (FUSE names the calling thread)."""
    try:
        status = Path(f"/proc/{tid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    return None


def _descends_from(pid: int, ancestors: set[int]) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        if pid in ancestors:
            return True
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        pid, seen = int(fields[1]), seen + 1
    return False


def _control(current: list[LossyFS], mounts: queue.Queue[bool], events: Callable[[str], None]) -> None:
    """Read commands from stdin until it closes; answer ``ok`` once each took effect."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "mount":
            mounts.put(True)  # answered by "ready" once mounted
            continue
        operations = current[-1]
        if words[0] == "arm":
            operations.arm(int(words[1]), words[2], int(words[3]))
        elif words[0] == "cut":
            operations.cut(words[1], int(words[2]))
        elif words[0] == "victim":
            with operations.mutex:
                operations.victims.add(int(words[1]))
        elif words[0] == "stats":
            with operations.mutex:
                events(f"stats {operations.fsyncs} {operations.writes}")
        events("ok")
    mounts.put(False)


def serve(backing: Path, mountpoint: Path, fsync_delay: float = 0.0) -> None:
    """Mount the filesystem; after each unmount, mount it again, fresh, on a ``mount`` command.

    One process serves mount after mount (each from the backing folder alone, as
    after a restart): starting Python for every mount would cost more than the mount.
    """
    import mfusepy

    def event(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    class Fuse(mfusepy.FUSE):  # type: ignore[misc]
        """mfusepy's FUSE, but ftruncate passes its file handle (the path is NULL without one)."""

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            return int(self.operations.truncate(None if path is None else path.decode(), length, fh))

    current: list[LossyFS] = []
    mounts: queue.Queue[bool] = queue.Queue()
    mounts.put(True)
    threading.Thread(target=_control, args=(current, mounts, event), daemon=True).start()
    while mounts.get():
        current.append(LossyFS(backing, events=event, fsync_delay=fsync_delay))
        del current[:-1]
        Fuse(
            current[-1],
            str(mountpoint),
            foreground=True,
            nothreads=True,
            hard_remove=True,
            fsname="lossyfs",
            auto_unmount=True,
        )
        event("unmounted")


# -- driving it from Python --------------------------------------------------------------------------------


class LossyMount:
    """A lossy filesystem served by a process of its own; the handle of the test that drives it.

    ``unmount`` then ``remount`` is the restart after a power cut; ``close`` ends it all.
    """

    def __init__(
        self, backing: Path, mountpoint: Path, *, timeout: float = 30.0, fsync_delay: float = 0.0
    ) -> None:
        """Mount ``backing`` on ``mountpoint`` (both folders must exist) and wait until it is up.

        ``fsync_delay`` makes every sync take that many seconds more (a slow disk).
        """
        self.backing, self.mountpoint = backing, mountpoint
        self.cuts: list[int] = []
        self.mounted = False
        self._lines = b""
        # A file, not a pipe: a process that logs a lot must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(backing), str(mountpoint), "--fsync-delay", str(fsync_delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._wait_mounted(timeout)

    def _wait_mounted(self, timeout: float) -> None:
        if self._expect("ready", timeout) is None:
            tail = self.stderr_tail()
            self.close()
            raise RuntimeError(f"lossyfs did not mount: {tail}")
        self.mounted = True
        self.cuts.clear()

    def remount(self, timeout: float = 30.0) -> None:
        """Mount again, fresh from the backing folder alone (what a restart finds)."""
        assert not self.mounted
        self._write("mount")
        self._wait_mounted(timeout)

    def _write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def _send(self, line: str) -> None:
        """Send a command and wait until the filesystem took it."""
        self._write(line)
        if self._expect("ok", 30) is None:
            raise RuntimeError(f"lossyfs did not take {line!r}: {self.stderr_tail()}")

    def _expect(self, word: str, timeout: float) -> str | None:
        """Wait for the next event that starts with ``word``; return it (None on timeout or exit)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while True:
            while b"\n" in self._lines:
                line, self._lines = self._lines.split(b"\n", 1)
                text = line.decode()
                if text.startswith("cut"):
                    self.cuts.append(int(text.split()[1]))
                if text.startswith(word):
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None
                self._lines += chunk

    def arm(self, count: int, mode: str, seed: int) -> None:
        """Cut the power at the ``count``-th write-type operation from now."""
        self._send(f"arm {count} {mode} {seed}")

    def cut(self, mode: str, seed: int) -> None:
        """Cut the power now."""
        self._send(f"cut {mode} {seed}")

    def stats(self) -> tuple[int, int]:
        """Return the syncs and the write calls the filesystem served since it was mounted."""
        self._write("stats")
        line = self._expect("stats", 30)
        if line is None or self._expect("ok", 30) is None:
            raise RuntimeError(f"lossyfs did not answer stats: {self.stderr_tail()}")
        _word, fsyncs, writes = line.split()
        return int(fsyncs), int(writes)

    def victim(self, pid: int) -> None:
        """Have the process ``pid`` (and its children that write) killed when the power goes."""
        self._send(f"victim {pid}")

    def wait_cut(self, timeout: float) -> int | None:
        """Wait for the power cut; return how many write-type operations it came after."""
        if self.cuts:
            return self.cuts[-1]
        line = self._expect("cut", timeout)
        return None if line is None else int(line.split()[1])

    def stderr_tail(self) -> str:
        """Return the last lines the filesystem process wrote on stderr."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().decode(errors="replace").strip().splitlines()[-3:])

    def unmount(self) -> None:
        """Unmount (the process stays, for ``remount``)."""
        if not self.mounted:
            return
        self.mounted = False
        if self.process.poll() is not None:
            return
        for _attempt in range(50):
            done = subprocess.run(
                [_fusermount(), "-u", str(self.mountpoint)], capture_output=True, check=False
            )
            if done.returncode == 0:
                break
            time.sleep(0.1)
        else:
            lazy = [_fusermount(), "-u", "-z", str(self.mountpoint)]
            subprocess.run(lazy, capture_output=True, check=False)
        if self._expect("unmounted", 30) is None:
            raise RuntimeError(f"lossyfs did not unmount: {self.stderr_tail()}")

    def close(self) -> None:
        """Unmount and end the filesystem process."""
        try:
            self.unmount()
        finally:
            if self.process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr.close()

    def __enter__(self) -> LossyMount:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _fusermount() -> str:
    return shutil.which("fusermount3") or "fusermount3"


def fuse_unavailable(scratch: Path) -> str | None:
    """Return why a lossy filesystem cannot be mounted here, or None when it can (tries one)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"the FUSE binding cannot load: {exc}"
    backing, mountpoint = scratch / "probe-backing", scratch / "probe-mount"
    backing.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        with LossyMount(backing, mountpoint, timeout=15):
            (mountpoint / "probe").write_bytes(b"probe")
    except (RuntimeError, OSError) as exc:
        return f"a FUSE filesystem cannot be mounted: {exc}"
    return None


def main(argv: list[str] | None = None) -> None:
    """Serve the filesystem: ``BACKING MOUNTPOINT [--fsync-delay SECONDS]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--fsync-delay", type=float, default=0.0, help="seconds each sync takes more")
    args = parser.parse_args(argv)
    serve(args.backing, args.mountpoint, args.fsync_delay)


if __name__ == "__main__":
    main()
