"""Engines: turn a path or URL into a configured SQLAlchemy engine.

``build_engine`` applies every connection-level setting of both backends.
SQLite's are defined here: its per-connection pragmas (busy timeout,
synchronous, foreign keys) in one ``connect`` listener; how its transactions
start (``BEGIN IMMEDIATE`` for a writer), applied by one ``begin`` listener to
transactions opened through SQLAlchemy and by ``calls.run_call`` to the
operations, which open theirs on the driver connection; the settings a SQLite
file keeps (WAL, incremental auto-vacuum); and the 0600 mode of a new database
file. PostgreSQL's driver arguments (``lock_timeout``, network timeouts,
encoding) and its check of dead pooled connections are defined in
``dialects.py``, beside the rest of what is PostgreSQL's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .deadline import DEFAULT_CALL_TIMEOUT
from .dialects import POSTGRES_POOL, discard_dead_connections, is_dead, postgres_connect_args
from .driver import Driver
from .errors import DatabaseError, InvalidInput, NotADatabase
from .validation import is_encodable

__all__ = [
    "BEGIN_READ",
    "BEGIN_WRITE",
    "DEFAULT_BUSY_TIMEOUT",
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

#: Seconds a writer waits for a lock before ``DatabaseBusy`` (SQLite's busy
#: timeout, PostgreSQL's ``lock_timeout``): the default of both front ends.
DEFAULT_BUSY_TIMEOUT = 5.0

#: How a SQLite transaction starts: a writer takes the write lock at once (no
#: lock upgrade midway, which could fail without waiting), a reader does not.
BEGIN_WRITE = "BEGIN IMMEDIATE"
BEGIN_READ = "BEGIN"


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
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
) -> Engine:
    """Return an engine for ``url`` with the store's connection settings."""
    if durability not in ("normal", "full"):
        raise InvalidInput(f"durability must be 'normal' or 'full', not {durability!r}")
    try:
        if url.get_backend_name() == "postgresql":
            # No pre-ping (a round trip per transaction): dead connections are
            # told apart at checkout without one, and discarded on error.
            engine = create_engine(
                url, connect_args=postgres_connect_args(url, busy_timeout, call_timeout), **POSTGRES_POOL
            )
            discard_dead_connections(engine.pool)
            return engine
        if not is_sqlite(url):
            return create_engine(url, pool_pre_ping=True)
        if is_memory(url):
            engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            if Path(url.database or "").is_dir():
                raise NotADatabase(directory_given(url.database or ""))
            engine = create_engine(url, connect_args={"check_same_thread": False})
            # Only once the URL proved usable: a bad driver name leaves no file behind.
            _create_private_file(Path(url.database or ""))
    except ImportError as exc:
        hint = ""
        if url.get_backend_name() == "postgresql":
            hint = ": install codemode-store[postgres] (pip install 'codemode-store[postgres]')"
        raise DatabaseError(f"the driver of {url.drivername!r} is not installed ({exc}){hint}") from exc
    except SQLAlchemyError as exc:  # an unknown dialect or a bad option in the URL
        raise InvalidInput(f"cannot use database URL {url.render_as_string()!r}: {exc}") from exc
    configure_sqlite(engine, durability=durability, busy_timeout=busy_timeout)
    return engine


def directory_given(path: str) -> str:
    """Return what is said of a folder given where a SQLite database file belongs (every tool says it so)."""
    return f"{path!r} is a directory, not a database file: name a file in it (for example {path}/host.db)"


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
        statement = BEGIN_READ if connection.get_execution_options().get(READ_ONLY) else BEGIN_WRITE
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
    store takes one from here instead, one thread at a time. A PostgreSQL
    connection is kept too, and checked before reuse as the pool's checkout
    checks it (``dialects.is_dead``: one ``poll()``, no round trip); a connection
    that dies while in use fails that call and is invalidated there. A
    connection is dropped, not kept, after an error other than a rule's
    rejection and when the engine was disposed since it was taken (its pool
    was replaced). On SQLite each connection keeps its
    :class:`~codemode_store.driver.Driver` (its cursor) too, made once when the
    connection is first taken; not on PostgreSQL, where a psycopg cursor holds
    its last result (a payload, maybe) until it is closed, and a round trip
    dwarfs a new cursor's cost.
    """

    __slots__ = ("_check", "_engine", "_idle", "_keep")

    def __init__(self, engine: Engine, keep: int = 2) -> None:
        """Keep up to ``keep`` idle connections of ``engine`` (an engine with options, too)."""
        self._engine = engine
        self._keep = keep
        # Only a server connection can die behind the store's back.
        self._check = engine.url.get_backend_name() == "postgresql"
        self._idle: list[tuple[Any, Connection, Driver | None]] = []

    def take(self) -> tuple[Connection, Driver | None]:
        """Lend a connection for one transaction, with its driver: an idle one, or a new one."""
        pool = self._engine.pool
        while self._idle:
            try:
                owner, conn, driver = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if owner is pool and not conn.invalidated:
                if not (self._check and is_dead(conn.connection.driver_connection)):
                    return conn, driver
                # The server closed it (a restart, a termination): the others
                # most likely died with it, and the pool checks what it gets back.
                conn.invalidate()
                self.drop(conn, driver)
                self.close()
                break
            self.drop(conn, driver)
        conn = self._engine.connect()
        if self._check:
            return conn, None
        try:
            return conn, Driver(conn)
        except BaseException:
            conn.close()
            raise

    def give(self, conn: Connection, driver: Driver | None) -> None:
        """Take back a connection whose transaction ended; keep it idle, or close it."""
        # list.append and list.pop are atomic: no lock between threads is needed,
        # and overshooting ``keep`` by a connection or two in a race is harmless.
        if len(self._idle) < self._keep and not conn.invalidated and not conn.in_transaction():
            self._idle.append((self._engine.pool, conn, driver))
        else:
            self.drop(conn, driver)

    @staticmethod
    def drop(conn: Connection, driver: Driver | None) -> None:
        """Close a connection that is not kept (back to the pool, or discarded), and its driver."""
        if driver is not None:
            driver.close()
        conn.close()

    def close(self) -> None:
        """Close every idle connection (they go back to the engine's pool)."""
        while self._idle:
            try:
                _owner, conn, driver = self._idle.pop()
            except IndexError:
                break
            self.drop(conn, driver)
