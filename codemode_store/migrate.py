"""The schema runner: Alembic configured in code, driven on open and by the CLI.

Opening a store costs one ``SELECT`` when the database is already at the head
revision (``HEAD_REVISION``, kept equal to the scripts' head by a test); only an
empty or older database loads Alembic's script directory and upgrades. A
revision this version does not know raises :class:`SchemaError` and nothing is
written; so does a SQLite file that holds tables but no revision (another
program's database).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from .dialects import lock_schema
from .engine import READ_ONLY, prepare_sqlite_file
from .errors import SchemaError
from .layout import migrations_folder

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "foreign_keys_off",
    "history",
    "migration_connection",
    "script_location",
    "upgrade",
]

#: The newest revision in ``migrations/versions``.
HEAD_REVISION = "0003"

_VERSION_QUERY = text("SELECT version_num FROM alembic_version")
# SQLite's fast path also asks for the journal mode: a store at head whose file
# was switched out of WAL behind its back takes the slow path, which restores it.
_SQLITE_VERSION_QUERY = text(
    "SELECT version_num, (SELECT journal_mode FROM pragma_journal_mode) FROM alembic_version"
)


def script_location() -> Path:
    """Return the folder of the migration scripts.

    The wheel installs them as ``codemode_store/migrations``; in a source
    checkout they are the top-level ``migrations/`` beside the package (see
    :mod:`codemode_store.layout`, which decides for both).
    """
    return migrations_folder()


def alembic_config(connection: Connection | None = None, stdout: TextIO | None = None) -> Config:
    """Return an Alembic ``Config`` for this package, optionally bound to ``connection``."""
    # Alembic is imported where it is used: opening a database already at head
    # (one SELECT) never needs it, and it costs a fifth of a fresh process's start-up CPU.
    from alembic.config import Config

    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """Return the revision stamped in the database, or ``None`` when it has none."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn, conn.begin():
        return _stamped_revision(conn)


def _at_head(engine: Engine) -> bool:
    """Tell with one ``SELECT`` whether the database is ready: stamped at head (and WAL)."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        sqlite = conn.dialect.name == "sqlite"
        try:
            with conn.begin():
                rows = conn.execute(_SQLITE_VERSION_QUERY if sqlite else _VERSION_QUERY).all()
        except DBAPIError:
            # Most often no alembic_version table yet (a new database); the slow
            # path looks closer and reports any other error itself.
            return False
    if sqlite:
        return [tuple(row) for row in rows] == [(HEAD_REVISION, "wal")]
    return [row[0] for row in rows] == [HEAD_REVISION]


def _stamped_revision(conn: Connection) -> str | None:
    if not conn.dialect.has_table(conn, "alembic_version"):
        if conn.dialect.name == "sqlite" and inspect(conn).get_table_names():
            raise SchemaError(
                "the SQLite file holds tables but no codemode_store schema revision: "
                "it is another program's database, left untouched"
            )
        return None
    rows = conn.execute(_VERSION_QUERY).scalars().all()
    if len(rows) > 1:
        raise SchemaError(f"the database is stamped with several revisions: {', '.join(rows)}")
    return rows[0] if rows else None


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def _check_known(revision: str | None) -> None:
    if revision is not None and revision not in _known_revisions():
        raise SchemaError(
            f"the database is at schema revision {revision!r}, which this version of "
            f"codemode_store does not know (its newest is {HEAD_REVISION!r}); it was "
            "written by a newer codemode_store: upgrade the package, not the database"
        )


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema of ``engine``'s database to the head revision."""
    if _at_head(engine):
        return
    upgrade(engine, "head")


@contextlib.contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """Yield a connection ready for a migration, inside a write transaction.

    On SQLite the file gets its persistent settings first and foreign key
    enforcement is off for the migration (see :func:`foreign_keys_off`); on
    PostgreSQL the transaction holds the schema lock (see :func:`lock_schema`).
    """
    with engine.connect() as conn:
        prepare_sqlite_file(conn)
        with foreign_keys_off(conn), conn.begin():
            lock_schema(conn)
            yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade (or downgrade, for a revision below the current one) to ``revision``."""
    from alembic import command
    from alembic.util.exc import CommandError

    # Look before preparing the file: a foreign or newer database stays untouched.
    _check_known(current_revision(engine))
    with migration_connection(engine) as conn:
        # Re-read under the write lock: another process may have upgraded.
        _check_known(_stamped_revision(conn))
        try:
            command.upgrade(alembic_config(conn), revision)
        except CommandError as exc:
            raise SchemaError(f"cannot upgrade to {revision!r}: {exc}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``"base"`` drops every table)."""
    from alembic import command
    from alembic.util.exc import CommandError

    _check_known(current_revision(engine))
    with migration_connection(engine) as conn:
        try:
            command.downgrade(alembic_config(conn), revision)
        except CommandError as exc:
            raise SchemaError(f"cannot downgrade to {revision!r}: {exc}") from exc


def history() -> list[tuple[str, str | None, str]]:
    """Return the known revisions, newest first: (revision, down revision, message)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    result = []
    for rev in script.walk_revisions():
        down = rev.down_revision
        down_text = down if isinstance(down, str) or down is None else ",".join(down)
        result.append((rev.revision, down_text, rev.doc or ""))
    return result


@contextlib.contextmanager
def foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Turn SQLite's foreign key enforcement off on ``conn`` for a migration.

    The pragma is a no-op inside a transaction, so it is set before one begins;
    batch migrations copy tables, which enforcement would break half-way.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    # Straight on the driver connection: through SQLAlchemy the statement would
    # open (autobegin) the very transaction the pragma must precede.
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            driver.execute("PRAGMA foreign_keys = ON")
