"""The schema runner: Alembic configured in code, driven on open and by the CLI.

Opening a store costs one ``SELECT`` when the database is already at the head
revision (``HEAD_REVISION``, kept equal to the scripts' head by a test); only an
empty or older database loads Alembic's script directory and upgrades. A
revision this version does not know raises :class:`SchemaError` and nothing is
written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text

from .engine import READ_ONLY
from .errors import SchemaError

__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "current_revision",
    "ensure_schema",
    "foreign_keys_off",
    "history",
    "script_location",
    "upgrade",
]

#: The newest revision in ``migrations/versions``.
HEAD_REVISION = "0001"

_VERSION_QUERY = text("SELECT version_num FROM alembic_version")


def script_location() -> Path:
    """Return the folder of the migration scripts.

    The wheel installs them as ``codemode_store/migrations``; in a source
    checkout they are the top-level ``migrations/`` beside the package.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SchemaError(f"the migration scripts are missing from {package}")


def alembic_config(connection: Connection | None = None, stdout: TextIO | None = None) -> Config:
    """Return an Alembic ``Config`` for this package, optionally bound to ``connection``."""
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


def _stamped_revision(conn: Connection) -> str | None:
    if not conn.dialect.has_table(conn, "alembic_version"):
        return None
    rows = conn.execute(_VERSION_QUERY).scalars().all()
    if len(rows) > 1:
        raise SchemaError(f"the database is stamped with several revisions: {', '.join(rows)}")
    return rows[0] if rows else None


def _known_revisions() -> set[str]:
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
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    _check_known(revision)
    upgrade(engine, "head")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade (or downgrade, for a revision below the current one) to ``revision``."""
    with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        # Re-read under the write lock: another process may have upgraded.
        _check_known(_stamped_revision(conn))
        try:
            command.upgrade(alembic_config(conn), revision)
        except CommandError as exc:
            raise SchemaError(f"cannot upgrade to {revision!r}: {exc}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``"base"`` drops every table)."""
    with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        try:
            command.downgrade(alembic_config(conn), revision)
        except CommandError as exc:
            raise SchemaError(f"cannot downgrade to {revision!r}: {exc}") from exc


def history() -> list[tuple[str, str | None, str]]:
    """Return the known revisions, newest first: (revision, down revision, message)."""
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
