"""Engines: turn a path or URL into a configured SQLAlchemy engine.

Everything that differs between SQLite and PostgreSQL at the connection level
lives here: SQLite's pragmas (WAL, busy timeout, synchronous, foreign keys) in
one ``connect`` listener, its ``BEGIN IMMEDIATE`` in one ``begin`` listener,
the 0600 mode of a new database file, and the way driver errors become
:class:`~codemode_store.errors.StoreError` subclasses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from .errors import InvalidInput

__all__ = ["READ_ONLY", "Durability", "build_engine", "is_sqlite", "to_url"]

Durability = Literal["normal", "full"]

#: Execution option that makes a SQLite transaction start with a plain (deferred)
#: ``BEGIN``: readers must not take the write lock.
READ_ONLY = "codemode_read_only"

DEFAULT_BUSY_TIMEOUT = 5.0


def to_url(target: str | os.PathLike[str] | URL) -> URL:
    """Return the SQLAlchemy URL of a database path or URL string."""
    if isinstance(target, URL):
        return target
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if not isinstance(target, str) or not target:
        raise InvalidInput(f"database must be a path or URL, not {target!r}")
    if "://" in target:
        try:
            return make_url(target)
        except Exception as exc:  # sqlalchemy raises ArgumentError on a bad URL
            raise InvalidInput(f"not a database URL: {exc}") from exc
    return URL.create("sqlite", database=str(Path(target)))


def is_sqlite(url: URL) -> bool:
    """Tell whether ``url`` names a SQLite database."""
    return url.get_backend_name() == "sqlite"


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def build_engine(
    url: URL,
    *,
    durability: Durability = "normal",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> Engine:
    """Return an engine for ``url`` with the store's connection settings."""
    if durability not in ("normal", "full"):
        raise InvalidInput(f"durability must be 'normal' or 'full', not {durability!r}")
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True)
    if _is_memory(url):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _create_private_file(Path(url.database or ""))
        engine = create_engine(url, connect_args={"check_same_thread": False})
    _configure_sqlite(engine, durability=durability, busy_timeout=busy_timeout)
    return engine


def _create_private_file(path: Path) -> None:
    """Create a missing database file readable and writable by its owner only.

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file,
    so creating it 0600 keeps all three private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # let SQLite report why it cannot open the file
    os.close(fd)


def _configure_sqlite(engine: Engine, *, durability: Durability, busy_timeout: float) -> None:
    synchronous = "FULL" if durability == "full" else "NORMAL"
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin listener below own the transactions: pysqlite's
        # own implicit BEGIN would leave reads outside the transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            # Takes effect only on a database with no table yet (a new file), so
            # that freed pages can be given back without rewriting the file.
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
