"""The ``codemode-store`` command line (installed as ``codemode_store.cli``).

A thin layer: each command opens the store, makes one library call and prints.
A ``StoreError`` becomes one ``error: ...`` line on stderr and exit status 1,
in one place (:class:`StoreGroup`); click's usage errors exit with status 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from click.core import ParameterSource
from sqlalchemy.exc import SAWarning

from codemode_store import ObservationStore, __version__, admin, display, inspection
from codemode_store.demo import DEFAULT_DEMO_DB, run_demo
from codemode_store.errors import StoreError
from codemode_store.migrate import HEAD_REVISION
from codemode_store.progress import Progress
from codemode_store.retention import parse_age
from codemode_store.validation import MAX_GENERATION

DEFAULT_DB = "codemode-store.db"

F = TypeVar("F", bound=Callable[..., Any])


class StoreFailure(click.ClickException):
    """A ``StoreError`` shown as one ``error:`` line (exit status 1)."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error line on stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


class StoreGroup(click.Group):
    """The command group that turns every ``StoreError`` into a :class:`StoreFailure`."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report a store error in one line, password and controls escaped.

        Any other exception (a driver or environment surprise the library did
        not foresee) is reported the same way, named by its type, rather than as
        a traceback; click's own exceptions (usage errors, exit) pass through.
        SQLAlchemy's warnings (for example about an unknown URL option) are
        silenced: the command's output is its result or one error line.
        """
        target = str(ctx.params.get("target") or "")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SAWarning)
                return super().invoke(ctx)
        except StoreError as exc:
            raise StoreFailure(display.escape(admin.hide_password(str(exc), target))) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            message = f"unexpected {type(exc).__name__}: {exc}"
            raise StoreFailure(display.escape(admin.hide_password(message, target))) from exc


def _target() -> str:
    return str(click.get_current_context().find_root().params["target"])


def _open() -> ObservationStore:
    """Open the store named by ``--db`` (never creating one), closed when the command ends."""
    store = admin.open_existing(_target())
    click.get_current_context().call_on_close(store.close)
    return store


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def _json_option(function: F) -> F:
    option = click.option("--json", "as_json", is_flag=True, help="Print JSON only (keys: see README).")
    return option(function)


_GENERATION = click.IntRange(0, MAX_GENERATION)


@click.group(cls=StoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "target",
    envvar="CODEMODE_STORE_URL",
    default=DEFAULT_DB,
    show_default=True,
    show_envvar=True,
    metavar="PATH_OR_URL",
    help="The store: a SQLite file path or a SQLAlchemy URL.",
)
@click.version_option(__version__, prog_name="codemode-store")
def main(target: str) -> None:
    """Inspect and manage what a code-mode host's store retains.

    \b
    Example:
      codemode-store demo
      codemode-store --db host.db cells --session thread-1
    """


@main.command()
@_json_option
def sessions(as_json: bool) -> None:
    """List sessions with cell counts and retained bytes.

    Per session: cells (and open ones), observations, retained bytes, last activity.

    \b
    Example:
      codemode-store --db host.db sessions
    """
    found = inspection.sessions(_open())
    if as_json:
        _print_json([inspection.record(s) for s in found])
    else:
        click.echo(display.sessions_table(found))


@main.command()
@click.option("--session", "session_id", metavar="SESSION", help="Only the cells of this session.")
@_json_option
def cells(session_id: str | None, as_json: bool) -> None:
    """List cells with their last generation and retained bytes.

    Per cell: open or closed, last generation with its state and kind,
    observations, retained bytes, last activity.

    \b
    Example:
      codemode-store --db host.db cells --session thread-1
    """
    found = _open().cells(session_id)
    if as_json:
        _print_json([inspection.record(c) for c in found])
    else:
        click.echo(display.cells_table(found))


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.argument("cell_id", metavar="CELL")
@_json_option
def history(session_id: str, cell_id: str, as_json: bool) -> None:
    """Show every generation of one cell.

    Per generation: state, kind, bytes, recorded and released times.

    \b
    Example:
      codemode-store --db host.db history thread-1 cell-1
    """
    found = _open().session(session_id).history(cell_id)
    if as_json:
        _print_json([inspection.record(o) for o in found])
    else:
        click.echo(display.history_table(found))


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.argument("cell_id", metavar="CELL")
@click.argument("generation", metavar="[GEN]", type=_GENERATION, required=False)
@_json_option
def show(session_id: str, cell_id: str, generation: int | None, as_json: bool) -> None:
    """Show one generation: its payload, or its tombstone.

    GEN defaults to the cell's last generation. Text items are printed (control
    characters escaped), images summarised (media type, decoded size, detail); a
    released generation shows its tombstone, a failed one its error text.

    With --json, print the retained outcome exactly as on the wire; a generation
    that holds no outcome (pending, failed, released) is then an error.

    \b
    Example:
      codemode-store --db host.db show thread-1 cell-1 2
    """
    found = inspection.observation(_open(), session_id, cell_id, generation)
    if as_json:
        _print_json(inspection.wire_outcome(found))
    else:
        click.echo(display.observation_text(found))


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.argument("cell_id", metavar="CELL")
@click.argument("generation", metavar="GEN", type=_GENERATION)
def release(session_id: str, cell_id: str, generation: int) -> None:
    """Release a terminal generation (an acknowledgement).

    The payload is dropped and a tombstone (kind, size, sha256, times) remains.

    The rules are the API's: a pending, failed or non-terminal generation is
    refused; releasing a tombstone again changes nothing.

    \b
    Example:
      codemode-store --db host.db release thread-1 cell-1 2
    """
    dropped = _open().session(session_id).release(cell_id, generation)
    where = f"session {display.quoted(session_id)}, cell {display.quoted(cell_id)}, generation {generation}"
    click.echo(
        f"{where}: " + ("released; the tombstone remains" if dropped else "already released; nothing changed")
    )


@main.command("end-session")
@click.argument("session_id", metavar="SESSION")
def end_session(session_id: str) -> None:
    """Purge a session: its cells, payloads and tombstones.

    \b
    Example:
      codemode-store --db host.db end-session thread-1
    """
    deleted = _open().end_session(session_id)
    click.echo(f"session {display.quoted(session_id)}: ended; {deleted} observation(s) deleted")


@main.command()
@_json_option
def stats(as_json: bool) -> None:
    """Show the store's totals, file size and schema revision.

    Sessions, cells, observations by state, retained bytes, the SQLite file's
    size, and the schema revision against this version's head.

    \b
    Example:
      codemode-store --db host.db stats --json
    """
    found = inspection.stats(_open())
    if as_json:
        _print_json(inspection.record(found))
    else:
        click.echo(display.stats_text(found))


class _Age(click.ParamType[timedelta]):
    """An age such as ``7d``: a whole number and s, m, h, d or w."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        """Return the timedelta of ``value``; a usage error (exit 2) if it is not an age."""
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except StoreError as exc:
            self.fail(exc.detail, param, ctx)


def _is_terminal() -> bool:
    return sys.stdout.isatty()


@contextlib.contextmanager
def _progress(label: str, as_json: bool) -> Iterator[Progress | None]:
    """Yield a callback drawing click's progress bar on a terminal; ``None`` (quiet) otherwise."""
    if as_json or not _is_terminal():
        yield None
        return
    with click.progressbar(length=1, label=label) as bar:

        def advance(done: int, total: int) -> None:
            bar.length = max(total, 1)  # the total is known only once the operation has looked
            bar.update(done - bar.pos)

        yield advance


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@main.command(short_help="Purge sessions idle for longer than an age.")
@click.option(
    "--older-than",
    "older_than",
    type=_Age(),
    required=True,
    metavar="AGE",
    help="Purge sessions with no activity for longer than AGE (30m, 12h, 7d, 2w).",
)
@click.option("--dry-run", is_flag=True, help="Report what would go; change nothing.")
@click.option("--keep-tombstones", is_flag=True, help="Drop only payloads; every row stays as a tombstone.")
@_json_option
def gc(older_than: timedelta, dry_run: bool, keep_tombstones: bool, as_json: bool) -> None:
    """Purge sessions with no activity for a while: hosts that crashed never end theirs.

    Activity is a cell created or an observation begun, recorded or released.
    Each session goes in a transaction of its own, after a last look that no
    host touched it meanwhile.

    \b
    Example:
      codemode-store --db host.db gc --older-than 7d --dry-run
    """
    store = _open()
    with _progress("purging idle sessions", as_json or dry_run) as progress:
        report = store.gc(older_than, dry_run=dry_run, keep_tombstones=keep_tombstones, progress=progress)
    if as_json:
        _print_json(report.to_json())
        return
    would = "would be " if report.dry_run else ""
    idle = _plural(report.sessions, "session")
    click.echo(f"{idle} idle since {display.format_time(report.cutoff)} UTC")
    if report.expired:
        rows = [
            [
                display.escape(s.session_id),
                display.format_time(s.last_activity),
                f"{s.cells:,}",
                f"{s.observations:,}",
                f"{s.bytes_freed:,}",
            ]
            for s in report.expired
        ]
        headers = ["session", "last activity (UTC)", "cells", "observations", "payload bytes"]
        click.echo(display.format_table(headers, rows, right=(2, 3, 4)))
    if report.keep_tombstones:
        click.echo(f"{_plural(report.observations, 'observation')} {would}turned into tombstones", nl=False)
    else:
        rows_gone = f"{_plural(report.cells, 'cell')} and {_plural(report.observations, 'observation')}"
        click.echo(f"{rows_gone} {would}deleted", nl=False)
    click.echo(f"; {report.bytes_freed:,} payload bytes {would}freed")
    if report.skipped:
        names = ", ".join(display.quoted(name) for name in report.skipped)
        click.echo(f"kept {_plural(len(report.skipped), 'session')} a host used during the run: {names}")


@main.command(short_help="Check the database and re-hash every payload.")
@_json_option
def check(as_json: bool) -> None:
    """Check the database and re-hash every payload against its sha256; exit 1 if anything is wrong.

    SQLite: PRAGMA quick_check first (PostgreSQL has no equivalent). Corrupt
    payloads are listed by session, cell and generation.

    \b
    Example:
      codemode-store --db host.db check
    """
    store = _open()
    with _progress("re-hashing payloads", as_json) as progress:
        report = store.check(progress=progress)
    if as_json:
        _print_json(report.to_json())
    else:
        if report.quick_check is None:
            quick = f"not applicable ({store.engine.dialect.name} has no equivalent)"
        else:
            quick = "ok" if not report.quick_check else _plural(len(report.quick_check), "problem")
        click.echo(f"quick check  {quick}")
        for line in report.quick_check or ():
            click.echo(f"  {display.escape(line)}")
        rehashed = f"{_plural(report.payloads, 'payload')} re-hashed ({report.payload_bytes:,} bytes)"
        click.echo(f"payloads     {rehashed}, {len(report.corrupt) or 'none'} corrupt")
        for row in report.corrupt:
            where = f"session {display.quoted(row.session_id)}, cell {display.quoted(row.cell_id)}"
            click.echo(f"  {where}, generation {row.generation} ({row.state}): {row.reason}")
        if report.scan_error is not None:
            click.echo(f"  {display.escape(report.scan_error)}")
    if not report.ok:
        problems = len(report.quick_check or ()) + len(report.corrupt) + (report.scan_error is not None)
        raise StoreFailure(f"the check found {_plural(problems, 'problem')}")


@main.command(short_help="Give free pages back to the file system.")
@click.option("--full", is_flag=True, help="Rewrite the whole file (VACUUM): slower, but packs every page.")
@_json_option
def vacuum(full: bool, as_json: bool) -> None:
    """Give free pages back to the file system, and say how much the file shrank.

    SQLite: PRAGMA incremental_vacuum (or VACUUM with --full), then a WAL
    checkpoint. PostgreSQL: VACUUM (FULL) of the store's tables.

    \b
    Example:
      codemode-store --db host.db vacuum
    """
    store = _open()
    with _progress("reclaiming free pages", as_json) as progress:
        report = store.vacuum(full=full, progress=progress)
    if as_json:
        _print_json(report.to_json())
        return
    before, after = report.before, report.after
    click.echo(f"size         {before.file_bytes + (before.wal_bytes or 0):,} -> {after.file_bytes:,} bytes")
    click.echo(f"reclaimed    {report.bytes_reclaimed:,} bytes")
    if after.freelist_count is not None:
        click.echo(f"free pages   {after.freelist_count:,} ({after.reclaimable_bytes:,} bytes) left")
    if report.checkpointed is False:
        click.echo("note: another connection was reading; the write-ahead log is truncated on a later run")
    if after.auto_vacuum == "none":
        click.echo("note: auto-vacuum is off in this older file; `vacuum --full` turns it on")


@main.group()
def db() -> None:
    """Manage the database schema (Alembic).

    Alembic is configured inside the package: this works from any folder.

    \b
    Example:
      codemode-store --db host.db db upgrade
    """


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Create the schema, or upgrade it to REVISION (default: head).

    \b
    Example:
      codemode-store --db postgresql+psycopg://host@db/codemode db upgrade
    """
    before, after = admin.upgrade_schema(_target(), revision)
    if before == after:
        click.echo(f"schema already at revision {after}")
    else:
        click.echo(f"schema upgraded from revision {before or '(none)'} to {after}")


@db.command()
def current() -> None:
    """Print the schema revision the database is stamped with.

    \b
    Example:
      codemode-store --db host.db db current
    """
    revision = admin.schema_revision(_target())
    if revision is None:
        click.echo("no schema yet (create it with `codemode-store db upgrade`)")
    else:
        click.echo(f"{revision} ({'head' if revision == HEAD_REVISION else f'head is {HEAD_REVISION}'})")


@db.command("history")
def db_history() -> None:
    """List the schema revisions this version knows, newest first.

    \b
    Example:
      codemode-store db history
    """
    click.echo(display.revisions_table(admin.schema_history(_target())))


@main.command()
@click.option(
    "--db",
    "path",
    type=click.Path(dir_okay=False),
    help=f"The SQLite file to play on, emptied first  [default: {DEFAULT_DEMO_DB}]",
)
def demo(path: str | None) -> None:
    """Play a host session end to end, explained step by step.

    Runs on a fresh SQLite file (a file holding anything but an earlier demo is
    refused; CODEMODE_STORE_URL is ignored).

    Cells yield, complete and get stopped; a host process is killed mid-observation
    and restarted; answers are replayed, then acknowledged and released.

    \b
    Example:
      codemode-store demo --db /tmp/demo.db
    """
    root = click.get_current_context().find_root()
    if path is None:
        # A --db given before `demo` on the command line counts; CODEMODE_STORE_URL
        # never does: it may name a real host's store, which the demo would empty.
        explicit = root.get_parameter_source("target") == ParameterSource.COMMANDLINE
        path = str(root.params["target"]) if explicit else DEFAULT_DEMO_DB
    if "://" in path:
        raise click.UsageError("the demo runs on a SQLite file path, not a URL")
    run_demo(Path(path), click.echo)


if __name__ == "__main__":
    main()
