"""The ``codemode-store`` command line (installed as ``codemode_store.cli``).

A thin layer: each command opens the store, makes one library call and prints.
A ``StoreError`` becomes one ``error: ...`` line on stderr and exit status 1,
in one place (:class:`StoreGroup`); a usage error is one ``error: ...`` line
too, with exit status 2.

Start-up matters (a person types these commands): this module imports only
click and the package's light modules at start; SQLAlchemy is imported by the
commands that open a store, Alembic only by those that migrate.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta  # click imports datetime anyway
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from codemode_store import __version__
from codemode_store.cli_support.errors import StoreNotFound
from codemode_store.errors import DatabaseError, SchemaError, StoreError

# Only click and the package's error classes are imported at start: the rest
# (SQLAlchemy above all) is imported by the commands that need it, so that
# --version, --help and usage errors answer at once.
if TYPE_CHECKING:
    from types import ModuleType

    from click.shell_completion import CompletionItem

    from codemode_store import ObservationStore
    from codemode_store.cli_support import display
    from codemode_store.cli_support.admin import RevisionInfo
    from codemode_store.progress import Progress

DEFAULT_DB = "codemode-store.db"
#: The demo's default file (kept equal to ``codemode_store.cli_support.demo.DEFAULT_DEMO_DB`` by a test).
DEFAULT_DEMO_DB = "codemode-store-demo.db"
ENVIRONMENT_VARIABLE = "CODEMODE_STORE_URL"
FORMATS = ("table", "json", "jsonl", "csv", "tsv")
#: A ``gc`` age below this (in seconds) purges sessions that may be in use: it needs ``--yes``.
LIVE_AGE_SECONDS = 3600
#: The largest generation (``codemode_store.validation.MAX_GENERATION``; a test keeps them equal).
MAX_GENERATION = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])

# ctx.meta key of a --db given after the command name (ctx.meta is shared by the chain).
_DB_AFTER = "codemode_store.db_after_command"


# -- colour -------------------------------------------------------------------------------------


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _colour(terminal: bool) -> bool:
    """Tell whether to colour a stream: only a terminal, and never when NO_COLOR is set."""
    return terminal and not os.environ.get("NO_COLOR")


_STATE_COLOURS = {"pending": "yellow", "failed": "red", "retained": "green", "released": "bright_black"}


def _paint_state(text: str) -> str:
    colour = _STATE_COLOURS.get(text.strip())
    return click.style(text, fg=colour) if colour else text


# -- errors -------------------------------------------------------------------------------------


class StoreFailure(click.ClickException):
    """A ``StoreError`` shown as one ``error:`` line (exit status 1)."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error line on stderr, ``error:`` in red on a terminal."""
        _error_line(self.format_message())


class UsageLine(click.UsageError):
    """A usage error shown as one ``error:`` line naming the help to read (exit status 2)."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error line on stderr."""
        where = f" (see: {self.ctx.command_path} --help)" if self.ctx is not None else ""
        _error_line(f"{self.format_message()}{where}")


def _error_line(message: str) -> None:
    colour = _colour(_stderr_is_terminal())
    label = click.style("error:", fg="red", bold=True) if colour else "error:"
    click.echo(f"{label} {message}", err=True, color=colour)


def _one_line(exc: click.UsageError) -> UsageLine:
    if isinstance(exc, UsageLine):
        return exc
    return UsageLine(exc.format_message(), exc.ctx)


def _terminal_columns() -> int:
    """Return the terminal's width as ``shutil.get_terminal_size`` would (COLUMNS first, else 80)."""
    with contextlib.suppress(ValueError):
        columns = int(os.environ.get("COLUMNS", "0"))
        if columns > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class StoreContext(click.Context):
    """A context whose help formatter measures the terminal without importing ``shutil``."""

    def make_formatter(self) -> click.HelpFormatter:
        """Return click's formatter at click's width (shutil and the compressors it imports cost ~3 ms)."""
        width = self.terminal_width
        if width is None:
            width = max(min(_terminal_columns(), self.max_content_width or 80) - 2, 50)
        return click.HelpFormatter(width=width, max_width=self.max_content_width)


class StoreCommand(click.Command):
    """A command whose usage errors name it, so that the one error line points to its help."""

    context_class = StoreContext

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the arguments; a usage error the parser raised without a context gets this one."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class StoreGroup(click.Group):
    """The command group: every error is one line, a store error names its database."""

    context_class = StoreContext
    command_class = StoreCommand
    group_class = type  # subgroups (``db``) are StoreGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the group's own options; a usage error is one line."""
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report a store error in one line, password and controls escaped.

        Any other exception (a driver or environment surprise the library did
        not foresee) is reported the same way, named by its type, rather than as
        a traceback; click's own exit and abort pass through. A reader that
        closed the pipe (``| head``) ends the command quietly with status 0
        (see ``_reader_went_away``). SQLAlchemy's
        warnings (for example about an unknown URL option) are silenced: the
        command's output is its result or one error line.
        """
        if sys.stdout is None:
            # Started with stdout closed (`>&-`): say so before anything is done,
            # rather than fail on the first print after a write.
            raise StoreFailure("standard output is closed: nothing could be printed; nothing was done")
        try:
            with warnings.catch_warnings():
                # By message module, not SAWarning: importing sqlalchemy.exc
                # would load SQLAlchemy for commands that never open a store.
                warnings.filterwarnings("ignore", module=r"sqlalchemy(\.|$)")
                _silence_sqlalchemy_warnings()
                result = super().invoke(ctx)
                # Output still buffered meets a closed pipe here, not at exit.
                sys.stdout.flush()
                return result
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except StoreError as exc:
            raise StoreFailure(_safe(_store_message(exc))) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            _reader_went_away()
        except Exception as exc:
            raise StoreFailure(_safe(f"unexpected {type(exc).__name__}: {exc}")) from exc


def _reader_went_away() -> NoReturn:
    """End with status 0, quietly, once the reader of stdout has closed it (``| head -1``).

    The same status whether or not the command noticed: a short listing may
    fit the pipe whole before the reader exits, and then nothing fails. So a
    pipeline under ``set -o pipefail`` does not fail at random, as it does with
    a command that dies of SIGPIPE (``ls``, ``seq``: 141 when they notice, 0
    when they do not) or exits 1 (click's default). Stdout goes to
    ``/dev/null`` (Python's advice for SIGPIPE), so the flush at exit is quiet.
    """
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    raise click.exceptions.Exit(0)


def _silence_sqlalchemy_warnings() -> None:
    """Ignore SAWarning once SQLAlchemy is loaded (it is loaded lazily, by the command)."""
    exc_module = sys.modules.get("sqlalchemy.exc")
    if exc_module is not None:
        warnings.simplefilter("ignore", exc_module.SAWarning)


def _safe(message: str) -> str:
    """Return ``message`` with the database password hidden and control characters escaped."""
    from codemode_store.cli_support.display import escape

    target = _target_or_none()
    if target is not None and "://" in target:
        from codemode_store.cli_support.admin import hide_password

        message = hide_password(message, target)
    return escape(message)


def _store_message(exc: StoreError) -> str:
    if getattr(exc, "database", None) is not None:
        return str(exc)  # names its database already (the source or target of a copy)
    if isinstance(exc, (DatabaseError, SchemaError, StoreNotFound)):
        return _name_database(str(exc))
    return str(exc)


# -- which database -----------------------------------------------------------------------------


def _target_or_none() -> str | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    after = ctx.meta.get(_DB_AFTER)
    if after is not None:
        return str(after)
    value = ctx.find_root().params.get("target")
    return None if value is None else str(value)


def _target() -> str:
    target = _target_or_none()
    assert target is not None
    return target


def _source() -> str:
    """Say where the database came from: ``--db``, the environment, or the default."""
    ctx = click.get_current_context()
    if ctx.meta.get(_DB_AFTER) is not None:
        return "from --db"
    source = ctx.find_root().get_parameter_source("target")
    if source == ParameterSource.ENVIRONMENT:
        return f"from {ENVIRONMENT_VARIABLE}"
    if source in (ParameterSource.DEFAULT, None):
        return f"the default: no --db given and {ENVIRONMENT_VARIABLE} unset"
    return "from --db"


def _shown(target: str) -> str:
    """Return the database as it may be printed: a path as given, a URL without its password."""
    if "://" not in target:
        return target
    from codemode_store.cli_support.admin import hide_password

    try:
        from sqlalchemy import make_url

        return make_url(target).render_as_string(hide_password=True)
    except Exception:
        return hide_password(target, target)


def _name_database(message: str) -> str:
    """Return an error about the database naming it and where it came from (``--db`` or the environment)."""
    target = _target_or_none()
    if target is None:
        return message
    where, source = _shown(target), _source()
    message = message.replace("database error: ", "", 1)
    quoted = repr(where)
    if where and quoted in message:
        message = message.replace(quoted, f"{quoted} ({source})", 1)
    elif where and where in message:
        message = message.replace(where, f"{where} ({source})", 1)
    else:
        message = f"database {where} ({source}): {message}"
    if source.startswith("the default") and os.path.isfile(DEFAULT_DEMO_DB):
        message += f"; the demo's database is here: --db {DEFAULT_DEMO_DB}"
    return message


def _remember_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_DB_AFTER] = value


def _db_after_command(function: F) -> F:
    """Accept ``--db`` after the command name too (``codemode-store cells --db x.db``)."""
    option = click.option(
        "--db",
        "db_after_command",
        metavar="PATH_OR_URL",
        expose_value=False,
        callback=_remember_db,
        help="The store (may also stand before the command name).",
    )
    return option(function)


def _admin() -> ModuleType:
    """Import ``cli_support.admin`` (and so SQLAlchemy), its warnings silenced for the command."""
    from codemode_store.cli_support import admin

    _silence_sqlalchemy_warnings()
    return admin


@contextlib.contextmanager
def _naming_the_database() -> Iterator[None]:
    """Name the database, and where it came from, in any store error raised while opening it."""
    try:
        yield
    except StoreError as exc:
        raise StoreFailure(_safe(_name_database(str(exc)))) from exc


def _open() -> ObservationStore:
    """Open the store named by ``--db`` (never creating one), closed when the command ends."""
    admin = _admin()
    with _naming_the_database():
        store: ObservationStore = admin.open_existing(_target())
    click.get_current_context().call_on_close(store.close)
    return store


# -- options and argument types -------------------------------------------------------------------


class WholeNumber(click.ParamType[int]):
    """A plain whole number in a range: ASCII digits only (no sign, ``_``, spaces or other scripts)."""

    name = "integer"

    def __init__(self, low: int, high: int, what: str) -> None:
        """Accept ``low`` ≤ n ≤ ``high``; ``what`` names the value in messages."""
        self.low, self.high, self.what = low, high, what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the number; a usage error (exit 2) unless ``value`` is plain digits in range."""
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value)
            if re.fullmatch(r"[0-9]+", text) is None:
                self.fail(f"{text!r} is not {self.what}: {self._rule()}", param, ctx)
            number = int(text)
        if not self.low <= number <= self.high:
            self.fail(f"{number} is out of range: {self._rule()}", param, ctx)
        return number

    def _rule(self) -> str:
        return f"{self.what} is a plain whole number from {self.low} to {self.high}"


_GENERATION = WholeNumber(0, MAX_GENERATION, "a generation")
_LIMIT = WholeNumber(1, MAX_GENERATION, "a limit")
_NEGATIVE = re.compile(r"-[0-9]")


class GenerationCommand(StoreCommand):
    """A command with a GEN argument: ``-1`` is a negative generation, not an unknown option."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse a negative number with a message about generations, before click reads options."""
        for arg in args:
            if arg == "--":
                break
            if _NEGATIVE.match(arg):
                raise click.BadParameter(
                    f"{arg!r} is not a generation: {_GENERATION._rule()}", ctx, param_hint="'GEN'"
                )
        return super().parse_args(ctx, args)


class GenerationArgument(click.Argument):
    """A GEN argument, optional or not: a usage error calls it ``'GEN'`` either way (never ``'[GEN]'``)."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """Return the name usage errors give the argument."""
        return "'GEN'"


def _json_option(function: F) -> F:
    option = click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
    return option(function)


def _listing_options(function: F) -> F:
    """Add ``--limit``, ``--format`` and ``--json`` (meaning ``--format json``)."""
    options = [
        click.option("--limit", type=_LIMIT, metavar="N", help="Stop after N rows."),
        click.option(
            "--format",
            "output_format",
            type=click.Choice(FORMATS),
            help="table (default), json (one array), jsonl (one object a line), csv or tsv.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _output_format(output_format: str | None, as_json: bool) -> str:
    if as_json and output_format not in (None, "json"):
        raise click.UsageError(f"--json means --format json; it cannot go with --format {output_format}")
    return "json" if as_json else output_format or "table"


class Age(click.ParamType[timedelta]):
    """An age such as ``7d``: a plain whole number and s, m, h, d or w."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        """Return the timedelta of ``value``; a usage error (exit 2) if it is not a usable age."""
        if isinstance(value, timedelta):
            return value
        text = str(value)
        if re.fullmatch(r"[0-9]+[smhdw]", text) is None:
            self.fail(f"an age is a plain whole number and a unit (s, m, h, d or w), like 7d; not {text!r}")
        from codemode_store.retention import parse_age

        try:
            age = parse_age(text)
            datetime.now(UTC) - age  # the cutoff must be a date
        except StoreError as exc:
            self.fail(exc.detail, param, ctx)
        except OverflowError:
            self.fail(f"the age {text!r} reaches back before the year 1: give a smaller one", param, ctx)
        return age


# -- shell completion -------------------------------------------------------------------------------


@contextlib.contextmanager
def _completion_store(ctx: click.Context) -> Iterator[ObservationStore]:
    from codemode_store.cli_support import admin

    target = ctx.meta.get(_DB_AFTER) or ctx.find_root().params.get("target") or DEFAULT_DB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = admin.open_existing(str(target))
        try:
            yield store
        finally:
            store.close()


def _complete_session(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete a session id from the store (nothing when there is none to read)."""
    from click.shell_completion import CompletionItem

    from codemode_store.cli_support import inspection

    try:
        with _completion_store(ctx) as store:
            return [CompletionItem(name) for name in inspection.session_ids(store, incomplete)]
    except Exception:
        return []


def _complete_cell(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete a cell id of the session given before it on the command line."""
    from click.shell_completion import CompletionItem

    from codemode_store.cli_support import inspection

    session = ctx.params.get("session_id")
    if not session:
        return []
    try:
        with _completion_store(ctx) as store:
            return [CompletionItem(name) for name in inspection.cell_ids(store, str(session), incomplete)]
    except Exception:
        return []


def _session_argument(function: F) -> F:
    return click.argument("session_id", metavar="SESSION", shell_complete=_complete_session)(function)


def _cell_argument(function: F) -> F:
    return click.argument("cell_id", metavar="CELL", shell_complete=_complete_cell)(function)


# -- output -------------------------------------------------------------------------------------------


def _print_json(value: object) -> None:
    import json

    click.echo(json.dumps(value, indent=2))


def _csv_value(value: object) -> str:
    from codemode_store.cli_support.display import escape

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _print_listing(
    records: Iterator[Any],
    output_format: str,
    columns: display.Columns,
    row: Callable[[Any], list[str]],
    keys: tuple[str, ...],
) -> None:
    """Print records as they come, in one of ``FORMATS``."""
    import json
    import shutil
    from itertools import chain

    from codemode_store.cli_support import display
    from codemode_store.cli_support.inspection import record

    first = next(records, None)  # errors of the query come before any output
    if first is None:
        if output_format == "table":
            click.echo(columns.empty)
        elif output_format == "json":
            click.echo("[]")
        elif output_format in ("csv", "tsv"):
            _print_delimited([], keys, output_format)
        return
    every = chain([first], records)
    if output_format == "table":
        colour = _colour(_is_terminal())
        width = shutil.get_terminal_size().columns if _is_terminal() else None
        paint = {columns.state: _paint_state} if colour and columns.state is not None else None
        lines = display.stream_table(
            columns.headers,
            map(row, every),
            right=columns.right,
            max_width=width,
            paint=paint,
            drop=columns.drop,
        )
        for line in lines:
            click.echo(line, color=colour)
    elif output_format == "json":
        _print_json_array(record(item) for item in every)
    elif output_format == "jsonl":
        for item in every:
            click.echo(json.dumps(record(item)))
    else:
        _print_delimited((record(item) for item in every), keys, output_format)


def _print_json_array(objects: Iterable[dict[str, Any]]) -> None:
    """Print a JSON array one object at a time, exactly as ``json.dumps(list, indent=2)`` would."""
    import json

    click.echo("[")
    previous: str | None = None
    for item in objects:
        if previous is not None:
            click.echo(previous + ",")
        previous = "\n".join("  " + line for line in json.dumps(item, indent=2).splitlines())
    click.echo(f"{previous}\n]")


def _print_delimited(objects: Iterable[dict[str, Any]], keys: tuple[str, ...], output_format: str) -> None:
    """Print a header and one line a record; values escaped like the table's, absent values empty."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="," if output_format == "csv" else "\t", lineterminator="\n")

    def flush() -> None:
        click.echo(buffer.getvalue(), nl=False)
        buffer.seek(0)
        buffer.truncate()

    writer.writerow(keys)
    flush()
    for item in objects:
        writer.writerow([_csv_value(item[key]) for key in keys])
        flush()


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _confirm(question: str, yes: bool) -> None:
    """Ask ``question`` when stdin is a terminal (not with ``--yes``); stop unless the answer is yes."""
    if yes or not _stdin_is_terminal():
        return
    if not click.confirm(question, default=False):
        raise StoreFailure("not confirmed; nothing was changed")


def _yes_option(function: F) -> F:
    option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    return option(function)


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


# -- the commands ---------------------------------------------------------------------------------------


@click.group(cls=StoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "target",
    envvar=ENVIRONMENT_VARIABLE,
    default=DEFAULT_DB,
    show_default=True,
    show_envvar=True,
    metavar="PATH_OR_URL",
    help="The store: a SQLite file path or a SQLAlchemy URL (before or after the command name).",
)
@click.version_option(__version__, prog_name="codemode-store")
def main(target: str) -> None:
    """Inspect and manage what a code-mode host's store retains.

    Every command has --help with an example. Listings take --format
    (table, json, jsonl, csv, tsv) and --limit. Exit status: 0 success,
    1 a store error, 2 a usage error.

    \b
    Example:
      codemode-store demo
      codemode-store --db host.db cells --session thread-1
    """


@main.command()
@_listing_options
@_db_after_command
def sessions(limit: int | None, output_format: str | None, as_json: bool) -> None:
    """List sessions with cell counts and retained bytes.

    Per session: cells (and open ones), observations, retained bytes, last
    activity; ordered by session id. Rows are printed as they are read.

    \b
    Example:
      codemode-store --db host.db sessions --limit 20
    """
    from codemode_store.cli_support import display, inspection

    chosen = _output_format(output_format, as_json)
    found = inspection.iter_sessions(_open(), limit=limit)
    keys = inspection.RECORD_KEYS[inspection.SessionSummary]
    _print_listing(found, chosen, display.SESSION_COLUMNS, display.session_row, keys)


@main.command()
@click.option(
    "--session",
    "session_id",
    metavar="SESSION",
    shell_complete=_complete_session,
    help="Only the cells of this session.",
)
@click.option(
    "--state",
    type=click.Choice(("pending", "failed", "retained", "released")),
    help="Only the cells whose last generation is in this state.",
)
@click.option("--closed/--open", "closed", default=None, help="Only closed, or only open, cells.")
@_listing_options
@_db_after_command
def cells(
    session_id: str | None,
    state: str | None,
    closed: bool | None,
    limit: int | None,
    output_format: str | None,
    as_json: bool,
) -> None:
    """List cells with their last generation and retained bytes.

    Per cell: open or closed, last generation with its state and kind,
    observations, retained bytes, last activity; ordered by session id, then
    cell id. Rows are printed as they are read, so the first ones come at once
    however large the store.

    \b
    Example:
      codemode-store --db host.db cells --session thread-1 --state retained
      codemode-store --db host.db cells --open --limit 50 --format csv
    """
    from codemode_store.cli_support import display, inspection

    chosen = _output_format(output_format, as_json)
    found = inspection.iter_cells(
        _open(),
        session_id=session_id,
        state=state,  # type: ignore[arg-type]  # click.Choice checked it
        closed=closed,
        limit=limit,
    )
    keys = inspection.RECORD_KEYS[inspection.CellSummary]
    _print_listing(found, chosen, display.CELL_COLUMNS, display.cell_row, keys)


@main.command()
@_session_argument
@_cell_argument
@_listing_options
@_db_after_command
def history(
    session_id: str, cell_id: str, limit: int | None, output_format: str | None, as_json: bool
) -> None:
    """Show every generation of one cell.

    Per generation: state, kind, bytes, recorded and released times, and
    the host that began it ("-": a store opened without a host id).

    \b
    Example:
      codemode-store --db host.db history thread-1 cell-1
    """
    from codemode_store.cli_support import display, inspection

    chosen = _output_format(output_format, as_json)
    found = inspection.iter_history(_open(), session_id, cell_id, limit=limit)
    keys = inspection.RECORD_KEYS[inspection.Observation]
    _print_listing(found, chosen, display.HISTORY_COLUMNS, display.history_row, keys)


@main.command(cls=GenerationCommand)
@_session_argument
@_cell_argument
@click.argument("generation", metavar="[GEN]", type=_GENERATION, required=False, cls=GenerationArgument)
@_json_option
@_db_after_command
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
    from codemode_store.cli_support import display, inspection

    found = inspection.observation(_open(), session_id, cell_id, generation)
    if as_json:
        _print_json(inspection.wire_outcome(found))
    else:
        click.echo(display.observation_text(found))


@main.command(cls=GenerationCommand)
@_session_argument
@_cell_argument
@click.argument("generation", metavar="GEN", type=_GENERATION, cls=GenerationArgument)
@_db_after_command
def release(session_id: str, cell_id: str, generation: int) -> None:
    """Release a terminal generation (an acknowledgement).

    The payload is dropped and a tombstone (kind, size, sha256, times) remains.

    The rules are the API's: a pending, failed or non-terminal generation is
    refused; releasing a tombstone again changes nothing.

    \b
    Example:
      codemode-store --db host.db release thread-1 cell-1 2
    """
    from codemode_store.cli_support import display

    dropped = _open().session(session_id).release(cell_id, generation)
    where = f"session {display.quoted(session_id)}, cell {display.quoted(cell_id)}, generation {generation}"
    click.echo(
        f"{where}: " + ("released; the tombstone remains" if dropped else "already released; nothing changed")
    )


@main.command("end-session")
@_session_argument
@_yes_option
@_db_after_command
def end_session(session_id: str, yes: bool) -> None:
    """Purge a session: its cells, payloads and tombstones.

    A session the store does not hold is an error. On a terminal, asks first
    (--yes does not).

    \b
    Example:
      codemode-store --db host.db end-session thread-1 --yes
    """
    from codemode_store.cli_support import display, inspection

    store = _open()
    found = list(inspection.iter_cells(store, session_id=session_id))
    if not found:
        raise StoreFailure(f"session {display.quoted(session_id)}: no such session in the store")
    observations = sum(cell.observations for cell in found)
    _confirm(
        f"Delete session {display.quoted(session_id)}: {_plural(len(found), 'cell')}, "
        f"{_plural(observations, 'observation')}?",
        yes,
    )
    deleted = store.end_session(session_id)
    click.echo(f"session {display.quoted(session_id)}: ended; {deleted} observation(s) deleted")


@main.command()
@_listing_options
@_db_after_command
def hosts(limit: int | None, output_format: str | None, as_json: bool) -> None:
    """List the host ids that share the store, live or lost.

    Per host id: its current incarnation, when its lease ends (the
    database's clock), live or lost (its lease ended a lease period ago or
    more, or it closed its store), and how many generations are pending
    under it; ordered by host id. See docs/several-hosts.md.

    \b
    Example:
      codemode-store --db postgresql+psycopg://db/store hosts
      codemode-store --db host.db hosts --format json
    """
    from codemode_store.cli_support import display, inspection

    chosen = _output_format(output_format, as_json)
    found = inspection.iter_hosts(_open(), limit=limit)
    keys = inspection.RECORD_KEYS[inspection.HostInfo]
    _print_listing(found, chosen, display.HOST_COLUMNS, display.host_row, keys)


@main.command()
@_json_option
@_db_after_command
def stats(as_json: bool) -> None:
    """Show the store's totals, file size and schema revision.

    Sessions, cells, observations by state, retained bytes, the SQLite file's
    size, and the schema revision against this version's head.

    \b
    Example:
      codemode-store --db host.db stats --json
    """
    from codemode_store.cli_support import display, inspection

    found = inspection.stats(_open())
    if as_json:
        _print_json(inspection.record(found))
    else:
        click.echo(display.stats_text(found))


@main.command(short_help="Purge sessions idle for longer than an age.")
@click.option(
    "--older-than",
    "older_than",
    type=Age(),
    required=True,
    metavar="AGE",
    help="Purge sessions with no activity for longer than AGE (30m, 12h, 7d, 2w).",
)
@click.option("--dry-run", is_flag=True, help="Report what would go; change nothing.")
@click.option("--keep-tombstones", is_flag=True, help="Drop only payloads; every row stays as a tombstone.")
@_yes_option
@_json_option
@_db_after_command
def gc(older_than: timedelta, dry_run: bool, keep_tombstones: bool, yes: bool, as_json: bool) -> None:
    """Purge sessions with no activity for a while: hosts that crashed never end theirs.

    Activity is a cell created or an observation begun, recorded or released.
    Each session goes in a transaction of its own, after a last look that no
    host touched it meanwhile. On a terminal, asks first (--yes does not); an
    AGE under one hour always needs --yes, as it would purge live sessions.

    \b
    Example:
      codemode-store --db host.db gc --older-than 7d --dry-run
    """
    from codemode_store.cli_support import display

    if older_than.total_seconds() < LIVE_AGE_SECONDS and not dry_run and not yes:
        raise click.UsageError(
            "an age under one hour purges sessions that hosts may be using right now; "
            "add --yes if you mean it (or --dry-run to see what would go)"
        )
    store = _open()
    if not dry_run:
        action = "Turn into tombstones" if keep_tombstones else "Purge"
        _confirm(f"{action} every session idle for longer than {older_than}?", yes)
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
@_db_after_command
def check(as_json: bool) -> None:
    """Check the database and re-hash every payload against its sha256; exit 1 if anything is wrong.

    SQLite: PRAGMA quick_check first (PostgreSQL has no equivalent). Corrupt
    payloads are listed by session, cell and generation.

    \b
    Example:
      codemode-store --db host.db check
    """
    from codemode_store.cli_support import display

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
        if report.quick_check is None:  # PostgreSQL enforces column types and CHECKs itself
            click.echo("rows         not applicable (the server enforces types and constraints)")
        else:
            click.echo(f"rows         {len(report.damaged) or 'none'} damaged")
        for damaged in report.damaged:
            key = ", ".join(f"{name} {_key_value(value)}" for name, value in damaged.key.items())
            click.echo(f"  {damaged.table}: {key}: {display.escape(damaged.reason)}")
    if not report.ok:
        raise StoreFailure(f"the check found {_plural(report.problems, 'problem')}")


def _key_value(value: object) -> str:
    """Return one value of a damaged row's key as ``check`` prints it: ids quoted, numbers as they are."""
    from codemode_store.cli_support import display

    return display.quoted(value) if isinstance(value, str) else str(value)


@main.command(short_help="Give free pages back to the file system.")
@click.option("--full", is_flag=True, help="Rewrite the whole file (VACUUM): slower, but packs every page.")
@_json_option
@_db_after_command
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
    if report.bytes_reclaimed >= 0:
        click.echo(f"reclaimed    {report.bytes_reclaimed:,} bytes")
    elif report.checkpointed is None:  # PostgreSQL
        click.echo(
            f"reclaimed    0 bytes (the tables grew by {-report.bytes_reclaimed:,}: VACUUM keeps free space "
            "for reuse and may add its free-space and visibility maps; `vacuum --full` gives space back)"
        )
    else:
        click.echo(f"reclaimed    0 bytes (the write-ahead log grew by {-report.bytes_reclaimed:,})")
    if after.freelist_count is not None:
        click.echo(f"free pages   {after.freelist_count:,} ({after.reclaimable_bytes:,} bytes) left")
    if report.checkpointed is False:
        click.echo("note: another connection was reading; the write-ahead log is truncated on a later run")
    if after.auto_vacuum == "none":
        click.echo("note: auto-vacuum is off in this older file; `vacuum --full` turns it on")


@main.group()
@_db_after_command
def db() -> None:
    """Manage the database schema (Alembic).

    Alembic is configured inside the package: this works from any folder.

    \b
    Example:
      codemode-store --db host.db db upgrade
    """


@db.command()
@click.argument("revision", default="head")
@_db_after_command
def upgrade(revision: str) -> None:
    """Create the schema, or upgrade it to REVISION (default: head).

    \b
    Example:
      codemode-store --db postgresql+psycopg://host@db/codemode db upgrade
    """
    admin = _admin()
    with _naming_the_database():
        _refuse_going_down(admin.schema_history(_target()), revision)
        before, after = admin.upgrade_schema(_target(), revision)
    if before == after:
        click.echo(f"schema already at revision {after}")
    else:
        click.echo(f"schema upgraded from revision {before or '(none)'} to {after}")


def _refuse_going_down(revisions: list[RevisionInfo], revision: str) -> None:
    """Refuse (usage error, exit 2) an ``upgrade`` to a revision older than the store's.

    Alembic would leave the store as it is and say nothing; a request to go
    down is never silently ignored. There is no ``db downgrade``: going down
    drops what later revisions hold (the hosts table, host columns).
    """
    order = [info.revision for info in revisions]  # newest first
    current = next((info.revision for info in revisions if info.is_current), None)
    if current is None:
        return
    if (
        revision == "base"
        or revision.startswith("-")
        or (revision in order and order.index(revision) > order.index(current))
    ):
        raise click.UsageError(
            f"revision {revision} is older than the store's revision {current}: `db upgrade` never goes "
            "down, and there is no downgrade (it would drop what later revisions hold); restore a backup "
            "taken before the upgrade instead"
        )


@db.command()
@_json_option
@_db_after_command
def current(as_json: bool) -> None:
    """Print the schema revision the database is stamped with.

    With --json: {"schema_revision": ..., "head_revision": ...}, the revision
    null when the database has no schema yet.

    \b
    Example:
      codemode-store --db host.db db current
    """
    from codemode_store.migrate import HEAD_REVISION

    admin = _admin()
    with _naming_the_database():
        revision = admin.schema_revision(_target())
    if as_json:
        _print_json({"schema_revision": revision, "head_revision": HEAD_REVISION})
    elif revision is None:
        click.echo("no schema yet (create it with `codemode-store db upgrade`)")
    else:
        click.echo(f"{revision} ({'head' if revision == HEAD_REVISION else f'head is {HEAD_REVISION}'})")


@db.command("history")
@_json_option
@_db_after_command
def db_history(as_json: bool) -> None:
    """List the schema revisions this version knows, newest first.

    With --json: an array of objects with the keys revision, down_revision,
    message, is_head and is_current.

    \b
    Example:
      codemode-store db history
    """
    from codemode_store.cli_support import display

    admin = _admin()
    with _naming_the_database():
        revisions = admin.schema_history(_target())
    if as_json:
        _print_json([admin.revision_record(revision) for revision in revisions])
    else:
        click.echo(display.revisions_table(revisions))


def _invocation() -> str:
    """Return how the user can type this command again from where they stand.

    ``codemode-store`` when the shell finds this very script on PATH; its full
    path otherwise (a virtual environment that is not activated).
    """
    import shlex
    import shutil

    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) != "codemode-store":
        return "codemode-store"
    found = shutil.which("codemode-store")
    with contextlib.suppress(OSError):
        if found is not None and os.path.samefile(found, script):
            return "codemode-store"
    return shlex.quote(os.path.abspath(script))


#: The extra that ``serve`` needs, and the modules it brings.
WEB_EXTRA_MODULES = ("starlette", "uvicorn", "jinja2", "markupsafe")


@main.command(short_help="Serve a web page of the store for people.")
@click.option(
    "--port", type=WholeNumber(0, 65535, "a port"), default=8765, show_default=True, help="0: any free port."
)
@click.option(
    "--host", metavar="HOST", help="Listen on HOST instead of 127.0.0.1 (then a token is required)."
)
@click.option("--allow-release", is_flag=True, help="Offer release and end-session buttons (else read-only).")
@_db_after_command
def serve(port: int, host: str | None, allow_release: bool) -> None:
    """Serve a web page of the store: sessions, cells, histories, payloads with images drawn.

    Listens on 127.0.0.1 only, unless --host is given: then every visitor needs
    the token in the URL printed at start. The store is opened read-only unless
    --allow-release. Needs the web extra: pip install 'codemode-store[web]'.

    \b
    Example:
      codemode-store --db host.db serve --port 8765
    """
    try:
        from codemode_store.web.server import serve as run
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in WEB_EXTRA_MODULES:
            raise
        raise StoreFailure(
            f"serve needs the web extra ({missing} is not installed): pip install 'codemode-store[web]'"
        ) from exc
    from codemode_store.cli_support.errors import CannotListen

    with _naming_the_database():
        try:
            run(
                _target(),
                port=port,
                host=host,
                allow_release=allow_release,
                echo=click.echo,
                command=_invocation(),
            )
        except CannotListen as exc:  # about the socket, not the database
            raise StoreFailure(_safe(str(exc))) from exc


# -- moving a store: copy, backup, export, import --------------------------------------------------------


@contextlib.contextmanager
def _copy_progress(as_json: bool) -> Iterator[Callable[[Any], None] | None]:
    """Yield a callback drawing a copy's progress (sessions, rows, bytes) on a terminal, else ``None``."""
    if as_json or not _is_terminal():
        yield None
        return
    from codemode_store.cli_support.moving import copy_state_text

    with click.progressbar(length=1000, label="copying", item_show_func=copy_state_text) as bar:

        def advance(state: Any) -> None:
            done = (
                state.sessions_done / max(state.sessions_total, 1)
                + state.rows_done / max(state.rows_total, 1)
                + state.bytes_done / max(state.bytes_total, 1)
            )
            bar.update(round(1000 * done / 3) - bar.pos, state)

        yield advance


@main.command("copy", short_help="Copy sessions into another store, SQLite or PostgreSQL.")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="The target store: a SQLite file path or a SQLAlchemy URL; created or upgraded.",
)
@click.option(
    "--session",
    "session_ids",
    multiple=True,
    metavar="S",
    shell_complete=_complete_session,
    help="Copy this session (repeat for more); default: every session.",
)
@_json_option
@_db_after_command
def copy_command(target: str, session_ids: tuple[str, ...], as_json: bool) -> None:
    """Copy sessions, every row as it is, into another store of either backend.

    Cells, observations in every state, tombstones with their size and sha256,
    times and requests, from one consistent snapshot of this store while hosts
    keep writing. Each session lands in one transaction of the target; a
    session the target holds already is skipped if identical, and stops the
    copy (exit 1, nothing written) if it differs. Each payload's sha256 is
    checked on arrival.

    \b
    Example:
      codemode-store --db host.db copy --to postgresql+psycopg://me@db.example/store
    """
    from codemode_store.cli_support.moving import copy_text
    from codemode_store.transfer import copy_to

    source = _open()
    with _copy_progress(as_json) as progress:
        report = copy_to(source, target, list(session_ids) or None, progress=progress)
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(copy_text(report))


@main.command(short_help="Back the store up into a new SQLite file, checked.")
@click.argument("destination", metavar="DEST", type=click.Path(dir_okay=False))
@_json_option
@_db_after_command
def backup(destination: str, as_json: bool) -> None:
    """Back the store up into a new SQLite file (0600), consistent while hosts write.

    SQLite: SQLite's online backup API, in one step (one read snapshot).
    PostgreSQL: every session copied into a new SQLite store (or use pg_dump:
    see docs/operations.md). The new file is checked (quick check, every
    payload re-hashed) before success is reported; DEST must not exist.

    \b
    Example:
      codemode-store --db host.db backup /backups/host-2026-12-05.db
    """
    from pathlib import Path

    from codemode_store.cli_support.moving import backup_text
    from codemode_store.transfer import backup as back_up

    source = _open()
    with _copy_progress(as_json) as progress:
        report = back_up(source, Path(destination), progress=progress)
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(backup_text(report))


@main.command("export", short_help="Write one session, payloads included, as JSON lines.")
@_session_argument
@click.option(
    "--out", "out", metavar="FILE", type=click.Path(dir_okay=False), help="Write to FILE (0600), not stdout."
)
@_db_after_command
def export_command(session_id: str, out: str | None) -> None:
    """Write one session, payloads included, as JSON lines with a versioned header.

    The file is what `import` reads (docs/operations.md describes it). With
    --out the file appears whole or not at all; without it, the lines go to
    stdout, which must not be a terminal.

    \b
    Example:
      codemode-store --db host.db export thread-1 --out thread-1.jsonl
    """
    from pathlib import Path

    from codemode_store.cli_support.moving import file_text, new_private_file
    from codemode_store.transfer import export_session

    if out is None and _is_terminal():
        raise click.UsageError("the export is JSON lines with payloads: give --out FILE, or pipe it")
    source = _open()
    if out is None:
        export_session(source, session_id, sys.stdout.buffer)
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise StoreFailure(_safe(f"cannot write {path}: the folder {path.parent} does not exist"))
    with new_private_file(path) as file:
        report = export_session(source, session_id, file)
    click.echo(file_text("exported", report, f"to {path}"))


@main.command("import", short_help="Rebuild a session from a file that export wrote.")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@_db_after_command
def import_command(file: str) -> None:
    """Rebuild one session from a file `export` wrote, exactly as it was exported.

    The header and every row are checked first (format version, length,
    sha256, each payload): a file of another version, truncated or edited,
    is refused and nothing is written. A session the store holds already is
    refused. The store is created if there is none (a SQLite file).

    \b
    Example:
      codemode-store --db debug.db import thread-1.jsonl
    """
    from codemode_store.cli_support.moving import file_text, seekable_input
    from codemode_store.store import ObservationStore
    from codemode_store.transfer import TRANSFER_CALL_TIMEOUT, check_session_file, import_session

    name = "stdin" if file == "-" else file
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(seekable_input(file))
        except OSError as exc:
            raise StoreFailure(_safe(f"cannot read {name}: {exc.strerror}")) from exc
        check_session_file(stream, name)  # before the store is opened (or created)
        with _naming_the_database():
            # The whole session is one transaction: PostgreSQL's bound on one call would cut a large one.
            store = ObservationStore.open(_target(), call_timeout=TRANSFER_CALL_TIMEOUT)
        stack.callback(store.close)
        report = import_session(store, stream, name=name)
    click.echo(file_text("imported", report, f"from {name}"))


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
    refused; CODEMODE_STORE_URL is ignored). At the end it prints commands to
    look around, with the full path of its database.

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
    from pathlib import Path

    from codemode_store.cli_support.demo import run_demo

    run_demo(Path(path), click.echo, command=_invocation())


if __name__ == "__main__":
    main()
