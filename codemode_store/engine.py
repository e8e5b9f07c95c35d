"""Engines: turn a path or URL into a configured SQLAlchemy engine.

Everything that differs between SQLite and PostgreSQL at the connection level
lives here: SQLite's per-connection pragmas (busy timeout, synchronous, foreign
keys) in one ``connect`` listener, its ``BEGIN IMMEDIATE`` in one ``begin``
listener, the settings a SQLite file keeps (WAL, incremental auto-vacuum), and
the 0600 mode of a new database file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .dialects import discard_dead_connections, postgres_connect_args
from .errors import DatabaseError, InvalidInput
from .validation import is_encodable

__all__ = [
    "READ_ONLY",
    "Durability",
    "IdleConnections",
    "build_engine",
    "configure_sqlite",
    "is_memory",
    "is_sqlite",
    "prepare_sqlite_file",
    "to_url",
]

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
    if not is_encodable(target):
        # A Linux file name that is not UTF-8: neither SQLite nor a URL can name it.
        raise InvalidInput(f"database path or URL is not valid UTF-8: {target!r}")
    if "://" in target:
        try:
            return make_url(target)
        except Exception as exc:  # sqlalchemy raises ArgumentError on a bad URL
            raise InvalidInput(f"not a database URL: {exc}") from exc
    return URL.create("sqlite", database=str(Path(target)))


def is_sqlite(url: URL) -> bool:
    """Tell whether ``url`` names a SQLite database."""
    return url.get_backend_name() == "sqlite"


def is_memory(url: URL) -> bool:
    """Tell whether ``url`` names an in-memory SQLite database."""
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def build_engine(
    url: URL,
    *,
    durability: Durability = "full",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> Engine:
    """Return an engine for ``url`` with the store's connection settings."""
    if durability not in ("normal", "full"):
        raise InvalidInput(f"durability must be 'normal' or 'full', not {durability!r}")
    try:
        if url.get_backend_name() == "postgresql":
            # No pre-ping (a round trip per transaction): dead connections are
            # told apart at checkout without one, and discarded on error.
            engine = create_engine(url, connect_args=postgres_connect_args(url, busy_timeout))
            discard_dead_connections(engine.pool)
            return engine
        if not is_sqlite(url):
            return create_engine(url, pool_pre_ping=True)
        if is_memory(url):
            engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            engine = create_engine(url, connect_args={"check_same_thread": False})
            # Only once the URL proved usable: a bad driver name leaves no file behind.
            _create_private_file(Path(url.database or ""))
    except ImportError as exc:
        raise DatabaseError(f"the driver of {url.drivername!r} is not installed: {exc}") from exc
    except SQLAlchemyError as exc:  # an unknown dialect or a bad option in the URL
        raise InvalidInput(f"cannot use database URL {url.render_as_string()!r}: {exc}") from exc
    configure_sqlite(engine, durability=durability, busy_timeout=busy_timeout)
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


def configure_sqlite(engine: Engine, *, durability: Durability, busy_timeout: float) -> None:
    """Attach the store's SQLite ``connect`` and ``begin`` listeners to ``engine``.

    ``engine`` may be the ``sync_engine`` of an asyncio engine: the listeners see
    the same DB-API calls through the async driver's adapter.
    """
    synchronous = "FULL" if durability == "full" else "NORMAL"
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin listener below own the transactions: pysqlite's
        # own implicit BEGIN would leave reads outside the transaction.
        dbapi_connection.isolation_level = None
        # Only settings of the connection here: none of them reads or writes the
        # file, so a file that is not ours is left untouched until the schema
        # check has looked at it (see prepare_sqlite_file for the file's own).
        # Through a DB-API cursor, which the aiosqlite adapter offers as well.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        statement = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        # Straight on the DB-API connection (a cursor, which the aiosqlite adapter
        # offers too): SQLAlchemy has nothing to add to a BEGIN, and its execution
        # machinery would cost about as much as one of the transaction's statements.
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        finally:
            cursor.close()


def prepare_sqlite_file(conn: Connection) -> None:
    """Give a SQLite file the settings it keeps: incremental auto-vacuum and WAL.

    Run by the schema runner outside any transaction (WAL cannot be turned on
    inside one), only once the file is known to be a store: both settings
    rewrite the file header, which a foreign or newer file must not suffer.
    """
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    # Takes effect only while the file has no table yet (a new store), so that
    # freed pages can be given back later without rewriting the whole file.
    driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
    driver.execute("PRAGMA journal_mode = WAL")


class IdleConnections:
    """A few connections of one engine kept open between transactions, for reuse.

    Checking a connection out of SQLAlchemy's pool and back for every short
    transaction costs about as much as the transaction's own statements; the
    store takes one from here instead, one thread at a time. Only SQLite keeps
    any (``keep`` is 0 otherwise): a server connection must go through the
    pool's pre-ping. A connection is dropped, not kept, after an error and when
    the engine was disposed since it was taken (its pool was replaced).
    """

    __slots__ = ("_engine", "_idle", "_keep")

    def __init__(self, engine: Engine, keep: int = 2) -> None:
        """Keep up to ``keep`` idle connections of ``engine`` (an engine with options, too)."""
        self._engine = engine
        self._keep = keep if is_sqlite(engine.url) else 0
        self._idle: list[tuple[Any, Connection]] = []

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """Lend a connection for one transaction; it goes back here unless the block raised."""
        pool = self._engine.pool
        conn = self._take(pool)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        # list.append and list.pop are atomic: no lock between threads is needed,
        # and overshooting ``keep`` by a connection or two in a race is harmless.
        if len(self._idle) < self._keep and not conn.invalidated and not conn.in_transaction():
            self._idle.append((pool, conn))
        else:
            conn.close()

    def _take(self, pool: Any) -> Connection:
        while self._idle:
            try:
                owner, conn = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if owner is pool and not conn.invalidated:
                return conn
            conn.close()
        return self._engine.connect()

    def close(self) -> None:
        """Close every idle connection (they go back to the engine's pool)."""
        while self._idle:
            try:
                _owner, conn = self._idle.pop()
            except IndexError:
                break
            conn.close()
