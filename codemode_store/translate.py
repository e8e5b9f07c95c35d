"""The one boundary where driver errors become ``StoreError`` subclasses.

No SQLAlchemy or DB-API exception leaves the public API: each is re-raised as
:class:`DatabaseUnavailable`, :class:`DatabaseBusy`, :class:`NotADatabase` or
:class:`DatabaseError`, with the key of the operation and the driver's own
words, chained with ``from``.

The class is chosen by the driver's error code, never by its English text:
SQLite's result code (``sqlite3.Error.sqlite_errorcode``, which aiosqlite's
errors carry too, being sqlite3's) and PostgreSQL's SQLSTATE (psycopg's
``Error.sqlstate``). One exception: a server that refuses a connection while
it starts (a wrong password, a database that does not exist) reaches psycopg
with no SQLSTATE at all, and only its words tell that refusal, which no retry
fixes, from a server that cannot be reached; those few words are matched.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Unpack

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .errors import DatabaseBusy, DatabaseError, DatabaseUnavailable, ErrorKey, NotADatabase, StoreError

__all__ = ["DRIVER_ERRORS", "errors_of_database", "is_server_unavailable", "translate"]

#: What ``translate`` takes: SQLAlchemy's errors, and sqlite3's own from the few
#: pragmas run on the driver connection.
DRIVER_ERRORS = (SQLAlchemyError, sqlite3.Error)

# SQLite's primary result codes. An error may carry an extended code (the
# primary one in its low byte: SQLITE_BUSY_SNAPSHOT, SQLITE_READONLY_DBMOVED,
# SQLITE_CANTOPEN_ISDIR, ...), so codes are compared by ``code & 0xFF``.
_PRIMARY = 0xFF
#: Another connection held the lock past the busy timeout.
_SQLITE_BUSY = frozenset({sqlite3.SQLITE_BUSY})
#: The file is not a SQLite database, or its pages are damaged.
_SQLITE_NOT_A_DATABASE = frozenset({sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT})
#: The file, or the folder that holds its -wal and -shm files, cannot be written.
_SQLITE_NOT_WRITABLE = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})

#: SQLSTATEs of PostgreSQL errors that a retry of the operation can overcome:
#: serialization_failure, deadlock_detected, lock_not_available (lock_timeout).
_POSTGRES_BUSY = frozenset({"40001", "40P01", "55P03"})
#: SQLSTATEs (besides class 08, connection_exception) of a server that is going
#: away or not yet back: admin_shutdown, crash_shutdown, cannot_connect_now
#: (starting up, shutting down, in recovery).
_POSTGRES_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03"})
_POSTGRES_CONNECTION_CLASS = "08"
#: What libpq reports when the server answered but refused the login: the
#: server's own words (in English unless its lc_messages says otherwise; a
#: translated refusal is reported as unavailable, the safe side: retry).
_LOGIN_REFUSED = (
    "authentication failed",  # password, md5, scram, peer, ident, ...
    "no pg_hba.conf entry",
    "does not exist",  # the database or the role
    "permission denied for database",
)
_LOGIN_HINT = "(the server refused the login: check the URL's user, password and database name)"

# SQLite says "readonly database" even when only the folder is read-only.
_NOT_WRITABLE_HINT = (
    "(check that the file and its folder exist and are writable by this user: "
    "SQLite keeps its -wal and -shm files beside the database)"
)


def translate(exc: SQLAlchemyError | sqlite3.Error, **key: Unpack[ErrorKey]) -> StoreError:
    """Return the ``StoreError`` that stands for a driver error."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    words = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    error_class: type[DatabaseError] = DatabaseError
    invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    primary = sqlite_code & _PRIMARY if isinstance(sqlite_code, int) else None
    if _login_refused(original, words):
        words = f"{words} {_LOGIN_HINT}"
    elif is_server_unavailable(original, invalidated):
        error_class = DatabaseUnavailable
        words = f"the database server is unreachable or went away: {words} (retry once it is back)"
    elif getattr(original, "sqlstate", None) in _POSTGRES_BUSY:
        error_class = DatabaseBusy
        words = f"{words} (a concurrent writer held the rows; the operation may be retried)"
    elif primary in _SQLITE_BUSY:
        error_class = DatabaseBusy
        words = f"{words} (another writer held the lock past the busy timeout)"
    elif primary in _SQLITE_NOT_A_DATABASE:
        error_class = NotADatabase
    elif primary in _SQLITE_NOT_WRITABLE:
        words = f"{words} {_NOT_WRITABLE_HINT}"
    return error_class(f"database error: {words}", **key)


def _login_refused(original: object, words: str) -> bool:
    """Tell whether a PostgreSQL connection failed because the server refused the login."""
    if getattr(original, "sqlstate", "") is not None:  # a SQLSTATE, or not a psycopg error
        return False
    lowered = words.lower()
    return lowered.startswith("connection failed") and any(marker in lowered for marker in _LOGIN_REFUSED)


def is_server_unavailable(original: object, connection_invalidated: bool) -> bool:
    """Tell whether a driver error means the PostgreSQL server cannot be reached or went away.

    ``connection_invalidated`` is SQLAlchemy's verdict that the error broke the
    connection. Otherwise: a server error of class 08 (connection exception) or
    a shutdown or start-up SQLSTATE; or an error of a driver that reports
    SQLSTATEs (psycopg) with none, about the connection itself (refused, timed
    out, closed), which is what psycopg raises when no server answered.
    """
    if not hasattr(original, "sqlstate"):
        return False  # sqlite3 and other drivers without SQLSTATEs: no server to lose
    if connection_invalidated:
        return True
    sqlstate = original.sqlstate
    if sqlstate is None:
        # By name: psycopg is an optional dependency. Its ConnectionTimeout is one.
        return any(cls.__name__ == "OperationalError" for cls in type(original).__mro__)
    return isinstance(sqlstate, str) and (
        sqlstate.startswith(_POSTGRES_CONNECTION_CLASS) or sqlstate in _POSTGRES_UNAVAILABLE
    )


@contextlib.contextmanager
def errors_of_database(**key: Unpack[ErrorKey]) -> Iterator[None]:
    """Re-raise SQLAlchemy errors raised inside the block as ``StoreError``."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc, **key) from exc
