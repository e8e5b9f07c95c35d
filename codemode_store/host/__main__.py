"""The reference host: ``python -m codemode_store.host --db PATH`` speaks JSON lines on stdin/stdout.

Each line on stdin is one request, each line on stdout its answer (see
docs/host.md); the host runs cells as shell commands and stores every answer
before it writes it. It fails what a previous host left pending when it starts,
and stops every command when its input ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import StoreError
from ..store import ObservationStore
from .commands import CommandRuntime
from .server import Host, serve

__all__ = ["main"]


def _audit_log(path: Path, runtime: CommandRuntime) -> Callable[[str, int], None]:
    """Return an ``on_run`` that appends a line to ``path``, synced, before each run.

    The line is ``cell generation host_pid=N command_pid=M``: the host's
    process and the cell's command (``-`` when the runtime does not know the
    cell, which then answers ``missing``).
    """

    def note(cell_id: str, generation: int) -> None:
        command = runtime.pid(cell_id)
        with path.open("a", encoding="utf-8") as log:
            log.write(f"{cell_id} {generation} host_pid={os.getpid()} command_pid={command or '-'}\n")
            log.flush()
            os.fsync(log.fileno())

    return note


def _shown(db: str) -> str:
    """Return the ``--db`` value as an error names it: a URL with its password hidden."""
    if "://" not in db:
        return db
    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL that does not parse)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reference host until stdin ends; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m codemode_store.host",
        description="A code-mode host on JSON lines: requests on stdin, answers on stdout.",
    )
    parser.add_argument("--db", required=True, help="the store: a SQLite path or a SQLAlchemy URL")
    parser.add_argument("--session", default="default", help="the Core session served (default: default)")
    parser.add_argument(
        "--audit",
        type=Path,
        metavar="FILE",
        help="append 'cell generation host_pid=N command_pid=M' to FILE (synced) before each run",
    )
    args = parser.parse_args(argv)
    try:
        with ObservationStore.open(args.db) as store, CommandRuntime() as runtime:
            on_run = None if args.audit is None else _audit_log(args.audit, runtime)
            host = Host(store, runtime, args.session, on_run=on_run)
            failed = host.start()
            print(
                f"host ready: session {host.session_id!r}, {failed} interrupted generation(s) failed",
                file=sys.stderr,
                flush=True,
            )
            serve(host, sys.stdin.buffer, sys.stdout.buffer)
    except StoreError as exc:
        print(f"error: database {_shown(args.db)} (--db): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # observe has failed the interrupted generation ("cancelled"): nothing stays pending.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
