"""The reference host: ``python -m codemode_store.host --db PATH`` speaks JSON lines on stdin/stdout.

Each line on stdin is one request, each line on stdout its answer (see
docs/host.md); the host runs cells as shell commands and stores every answer
before it writes it. It holds a host id (``--host-id``, default the machine's
host name; see docs/several-hosts.md), fails what a previous host left pending
when it starts and what lost hosts left pending once per lease period, stops
every command when its input ends, and stops serving (exit status 1) once
another process took over its host id (``HostFenced``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import DatabaseError, SchemaError, StoreError
from ..store import DEFAULT_LEASE_SECONDS, ObservationStore
from .commands import CommandRuntime
from .recovery import Recovery
from .server import RESTART_TEXT, Host, serve

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
    parser.add_argument(
        "--host-id",
        default=None,
        metavar="NAME",
        help="this host's id among those sharing the store (default: the machine's host name)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=DEFAULT_LEASE_SECONDS,
        metavar="S",
        help=f"the host's lease, renewed every third of it (default: {DEFAULT_LEASE_SECONDS:g})",
    )
    args = parser.parse_args(argv)
    host_id = socket.gethostname() if args.host_id is None else args.host_id
    try:
        with (
            ObservationStore.open(args.db, host_id=host_id, lease_seconds=args.lease_seconds) as store,
            CommandRuntime() as runtime,
        ):
            on_run = None if args.audit is None else _audit_log(args.audit, runtime)
            host = Host(store, runtime, args.session, on_run=on_run)
            failed = store.recovered + host.start()
            print(
                f"host ready: host {store.host_id!r} incarnation {store.incarnation}, "
                f"session {host.session_id!r}, {failed} interrupted generation(s) failed",
                file=sys.stderr,
                flush=True,
            )
            recovery = Recovery(store, RESTART_TEXT, store.lease_seconds)
            try:
                serve(host, sys.stdin.buffer, sys.stdout.buffer)
            finally:
                recovery.stop()
            if host.fenced is not None:
                raise host.fenced
    except StoreError as exc:
        # The database's own errors name it, as the command line's do.
        named = isinstance(exc, (DatabaseError, SchemaError))
        print(
            f"error: database {_shown(args.db)} (--db): {exc}" if named else f"error: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        # observe has failed the interrupted generation ("cancelled"): nothing stays pending.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
