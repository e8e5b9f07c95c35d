"""The one boundary where driver errors become ``StoreError`` subclasses.

No SQLAlchemy or DB-API exception leaves the public API: each is re-raised as
:class:`DatabaseUnavailable`, :class:`DatabaseBusy`, :class:`NotADatabase` or
:class:`DatabaseError`, with the key of the operation and the driver's own
words, chained with ``from``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .dialects import POSTGRES_BUSY_SQLSTATES, is_server_unavailable
from .errors import DatabaseBusy, DatabaseError, DatabaseUnavailable, NotADatabase, StoreError

__all__ = ["errors_of_database", "translate"]

_BUSY = ("database is locked", "database is busy", "deadlock detected", "could not serialize", "lock timeout")
_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed", "not a database")
_NOT_WRITABLE = ("readonly database", "unable to open database file")
# SQLite says "readonly database" even when only the folder is read-only.
_NOT_WRITABLE_HINT = (
    "(check that the file and its folder exist and are writable by this user: "
    "SQLite keeps its -wal and -shm files beside the database)"
)


def translate(exc: SQLAlchemyError | sqlite3.Error, **key: object) -> StoreError:
    """Return the ``StoreError`` that stands for a driver error."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    words = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    lowered = words.lower()
    error_class: type[DatabaseError] = DatabaseError
    invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
    if is_server_unavailable(original, invalidated):
        error_class = DatabaseUnavailable
        words = f"the database server is unreachable or went away: {words} (retry once it is back)"
    elif getattr(original, "sqlstate", None) in POSTGRES_BUSY_SQLSTATES:
        error_class = DatabaseBusy
        words = f"{words} (a concurrent writer held the rows; the operation may be retried)"
    elif any(marker in lowered for marker in _BUSY):
        error_class = DatabaseBusy
        words = f"{words} (another writer held the lock past the busy timeout)"
    elif any(marker in lowered for marker in _NOT_A_DATABASE):
        error_class = NotADatabase
    elif any(marker in lowered for marker in _NOT_WRITABLE):
        words = f"{words} {_NOT_WRITABLE_HINT}"
    return error_class(f"database error: {words}", **key)  # type: ignore[arg-type]


@contextlib.contextmanager
def errors_of_database(**key: object) -> Iterator[None]:
    """Re-raise SQLAlchemy errors raised inside the block as ``StoreError``."""
    try:
        yield
    # sqlite3's own errors come from the few pragmas run on the driver connection.
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise translate(exc, **key) from exc
