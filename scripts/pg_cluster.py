"""A throwaway PostgreSQL cluster that a test or campaign may crash and restart.

Started by ``scripts/start-postgres.sh start --durable`` (fsync, full page
writes and synchronous commit on), so a crash of the server is a real crash of
a durable server. ``kill`` crashes it the two ways a server dies without
warning: ``pg_ctl stop -m immediate`` (every server process quits at once, no
checkpoint) or SIGKILL of the postmaster; ``restart`` brings it back on the
same port, through crash recovery. ``freeze`` stops every server process with
SIGSTOP (the kernel still acknowledges TCP: a hung server, not a dead one) and
``thaw`` lets them go on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

__all__ = ["KILL_MODES", "Cluster", "find_bindir"]

ROOT = Path(__file__).resolve().parent.parent
START_SCRIPT = ROOT / "scripts" / "start-postgres.sh"
SERVICE_USER = "codemode-pg"  # the owner start-postgres.sh gives the cluster when run as root

#: How a kill takes the server down.
KILL_MODES = ("immediate", "sigkill")


def find_bindir() -> Path | None:
    """Return the folder of PostgreSQL's server programs (initdb, pg_ctl), or None if not installed."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(n) for n in re.findall(r"\d+", p)]
    )
    candidates = [Path(p) for p in reversed(found)]
    try:
        config = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidates.append(Path(config.stdout.strip()))
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


@dataclass
class Cluster:
    """A running throwaway cluster: its URL, its folder, and the programs that drive it."""

    url: str
    folder: Path
    bindir: Path

    @classmethod
    def start(cls) -> Cluster:
        """Start a new durable cluster on a free port of 127.0.0.1."""
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl found)")
        done = subprocess.run(
            ["bash", str(START_SCRIPT), "start", "--durable"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"start-postgres.sh failed: {done.stderr.strip()[-2000:]}")
        found = dict(re.findall(r"^export (\w+)=(\S+)$", done.stdout, re.MULTILINE))
        return cls(
            found["CODEMODE_STORE_TEST_POSTGRES_URL"], Path(found["CODEMODE_STORE_TEST_POSTGRES_DIR"]), bindir
        )

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(make_url(self.url).port or 5432)

    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.folder / "data"

    def _pg_ctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def settings(self) -> dict[str, str]:
        """Return the server's durability settings (fsync, synchronous_commit, full_page_writes)."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return {
                    name: str(conn.execute(text(f"SHOW {name}")).scalar_one())
                    for name in ("fsync", "synchronous_commit", "full_page_writes")
                }
        finally:
            engine.dispose()

    def postmaster_pid(self) -> int | None:
        """Return the postmaster's process id, or None when no server runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return pid

    def kill(self, mode: str) -> None:
        """Crash the server: ``immediate`` (pg_ctl stop -m immediate) or ``sigkill`` (of the postmaster)."""
        if mode == "immediate":
            done = self._pg_ctl("stop", "-m", "immediate", "-w")
            if done.returncode != 0:
                raise RuntimeError(f"pg_ctl stop failed: {done.stderr.strip()}")
        elif mode == "sigkill":
            pid = self.postmaster_pid()
            if pid is None:
                raise RuntimeError("no postmaster to kill")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.postmaster_pid() == pid and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            raise ValueError(f"kill mode must be one of {KILL_MODES}, not {mode!r}")

    def server_pids(self) -> list[int]:
        """Return the postmaster's process id and those of its children (backends, background workers)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The command name (field 2) is in parentheses and may hold spaces.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields and int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> list[int]:
        """Stop every server process with SIGSTOP; return their ids (give them to :meth:`thaw`)."""
        pids = self.server_pids()
        if not pids:
            raise RuntimeError("no server to freeze")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        # A backend forked while we were stopping the others is stopped too.
        for pid in self.server_pids():
            if pid not in pids:
                os.kill(pid, signal.SIGSTOP)
                pids.append(pid)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        """Let processes stopped by :meth:`freeze` go on (those that still exist)."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def restart(self, limit: float = 60.0) -> float:
        """Start the server again on its port (crash recovery included); return the seconds it took.

        After a SIGKILL of the postmaster its children take a moment to notice
        and quit; until they have, the new postmaster refuses to start (their
        shared memory is still in use), so starting is retried.
        """
        started = time.monotonic()
        while True:
            done = self._pg_ctl(
                "start", "-w", "-t", "60", "-l", str(self.folder / "server.log"), "-o", f"-p {self.port}"
            )
            if done.returncode == 0:
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise RuntimeError(f"the server did not restart: {done.stdout.strip()} {done.stderr.strip()}")
            time.sleep(0.2)

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        subprocess.run(
            ["bash", str(START_SCRIPT), "stop", str(self.folder)],
            capture_output=True,
            check=False,
            timeout=120,
        )
