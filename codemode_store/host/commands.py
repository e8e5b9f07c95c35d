"""A runtime whose cells are shell commands, each a subprocess with its output piped back.

``observe`` returns what the command wrote (stdout and stderr, as text) since
the previous observe: ``completed`` as soon as the command exits (``error_text``
names a non-zero status or a signal), else ``yielded`` once ``yield_time_ms``
passes. ``terminate`` kills the command's process group and returns
``terminated`` with its last output. Cells of a previous host process are
unknown here: ``missing``. A command does not outlive its host: if the host
dies without stopping it (``kill -9``), a reaper process (``reaper.py``) kills
its process group.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ..wire import Outcome, TextItem

__all__ = ["CommandRuntime"]

_CHUNK = 65_536
#: How long a killed command's last output is waited for.
_DRAIN_SECONDS = 1.0


class _Command:
    """One running command: its process, its pipe, and a decoder that keeps split UTF-8 whole."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.at_end = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read_until(self, deadline: float) -> str:
        """Return the output that arrives before ``deadline`` (or the end of the output)."""
        chunks: list[bytes] = []
        while not self.at_end:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            data = os.read(self.fd, _CHUNK)
            if not data:
                self.at_end = True
            chunks.append(data)
            if time.monotonic() >= deadline:
                break
        return self._decoder.decode(b"".join(chunks), final=self.at_end)

    def exit_status(self, deadline: float) -> int | None:
        """Return the exit status once the process ends before ``deadline``, else ``None``."""
        try:
            return self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the command and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Close the pipe and reap the process."""
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process.wait()


class _Reaper:
    """The reaper process of one runtime (``reaper.py``): told of each command's process group."""

    def __init__(self) -> None:
        script = Path(__file__).with_name("reaper.py")
        # A session of its own: a signal to the host's process group does not reach it.
        self._process = subprocess.Popen(  # noqa: S603 - our own script, by path
            [sys.executable, "-I", "-S", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _tell(self, line: str) -> None:
        assert self._process.stdin is not None
        # A reaper that is gone cannot be told; the host goes on serving.
        with contextlib.suppress(OSError, ValueError):
            self._process.stdin.write(line.encode("ascii"))
            self._process.stdin.flush()

    def watch(self, group: int) -> None:
        """List a command's process group: killed if the host dies while it runs."""
        self._tell(f"+{group}\n")

    def forget(self, group: int) -> None:
        """Take a reaped command's process group off the list (its id may be reused)."""
        self._tell(f"-{group}\n")

    def close(self) -> None:
        """End the reaper: every command was stopped, it has nothing left to kill."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        self._process.wait()


def _items(text: str) -> list[TextItem]:
    return [TextItem(text)] if text else []


def _error_text(status: int) -> str | None:
    if status == 0:
        return None
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


class CommandRuntime:
    """Cells as shell commands run by ``/bin/sh -c``; a :class:`~codemode_store.host.runtime.Runtime`."""

    def __init__(self, shell: str = "/bin/sh") -> None:
        """Run each cell's source with ``shell -c``."""
        self._shell = shell
        self._cells: dict[str, _Command] = {}
        self._reaper = _Reaper()

    def create(self, cell_id: str, source: str) -> None:
        """Start ``source`` as cell ``cell_id`` (in a process group of its own, so terminate reaches all)."""
        if cell_id in self._cells:
            raise ValueError(f"cell {cell_id!r} is already running")
        process = subprocess.Popen(  # noqa: S603 - running the cell's source is this runtime's job
            [self._shell, "-c", source],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reaper.watch(process.pid)
        self._cells[cell_id] = _Command(process)

    def pid(self, cell_id: str) -> int | None:
        """Return the process id of the cell's command (its process group's too), or ``None``."""
        command = self._cells.get(cell_id)
        return None if command is None else command.process.pid

    def observe(self, cell_id: str, yield_time_ms: int) -> Outcome:
        """Return the output since the last observe: ``completed`` if the command ended, else ``yielded``."""
        command = self._cells.get(cell_id)
        if command is None:
            return Outcome.missing()
        deadline = time.monotonic() + yield_time_ms / 1000
        text = command.read_until(deadline)
        status = command.exit_status(deadline) if command.at_end else None
        if status is None:
            return Outcome.yielded(_items(text))
        del self._cells[cell_id]
        self._close(command)
        return Outcome.completed(_items(text), error_text=_error_text(status))

    def terminate(self, cell_id: str) -> Outcome:
        """Kill the command; return ``terminated`` with the output it wrote before it died."""
        command = self._cells.pop(cell_id, None)
        if command is None:
            return Outcome.missing()
        command.kill()
        text = command.read_until(time.monotonic() + _DRAIN_SECONDS)
        self._close(command)
        return Outcome.terminated(_items(text))

    def _close(self, command: _Command) -> None:
        command.close()
        self._reaper.forget(command.process.pid)

    def close(self) -> None:
        """Kill every command still running, then end the reaper."""
        try:
            for cell_id in list(self._cells):
                self.terminate(cell_id)
        finally:
            self._reaper.close()

    def __enter__(self) -> CommandRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
