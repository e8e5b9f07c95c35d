"""The reaper: kills the commands of a host that died without stopping them.

``CommandRuntime`` starts this file as a script (``python -I -S reaper.py``, no
package import) in a session of its own, with a pipe on its stdin, and writes
``+PGID`` when a command starts and ``-PGID`` once it is reaped. When the pipe
ends, the host is gone (an exit, a crash, ``kill -9``: the kernel closes its
end either way), and the reaper kills every process group still listed, so a
command never goes on doing its side effects for a host that will answer
``missing`` for it after a restart. Only POSIX is used (a pipe, ``killpg``):
the same on Linux and macOS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

__all__ = ["main"]


def main() -> int:
    """Track the process groups named on stdin; kill those still listed when it ends."""
    # Not the terminal's to stop: Ctrl-C is for the host, which then stops its commands itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        sign, number = line[:1], line[1:].strip()
        if not number.isdigit():
            continue
        if sign == "+":
            groups.add(int(number))
        elif sign == "-":
            groups.discard(int(number))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
