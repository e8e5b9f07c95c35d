"""Space: how much room the database takes, and giving free pages back.

:func:`space` reports the file size and the free pages; :func:`vacuum` reclaims
them (SQLite: incremental or full vacuum, then a WAL checkpoint; PostgreSQL:
``VACUUM``) and reports the sizes before and after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from .jsonable import json_object
from .progress import Progress
from .transactions import Transactions
from .translate import errors_of_database

__all__ = ["SpaceStats", "VacuumReport", "space", "vacuum"]

_AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}
#: Pages one ``incremental_vacuum`` step frees; each step is a short write transaction.
VACUUM_STEP_PAGES = 2048
_POSTGRES_SIZE = (
    "SELECT pg_total_relation_size('observations') + pg_total_relation_size('cells')"
    " + pg_total_relation_size('alembic_version')"
)


@dataclass(frozen=True, slots=True)
class SpaceStats:
    """How much room the database takes, and how much of it is free.

    On SQLite ``file_bytes`` is the database file and ``wal_bytes`` its
    write-ahead log; the page figures come from its pragmas. On PostgreSQL
    ``file_bytes`` is the size of the store's tables with their indexes and
    TOAST, and the page figures are ``None``.
    """

    backend: str
    file_bytes: int
    wal_bytes: int | None
    page_size: int | None
    page_count: int | None
    freelist_count: int | None
    auto_vacuum: str | None

    @property
    def reclaimable_bytes(self) -> int:
        """Return the bytes of free pages that a vacuum can give back."""
        return (self.freelist_count or 0) * (self.page_size or 0)

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-able values."""
        keys = ("backend", "file_bytes", "wal_bytes", "page_size", "page_count", "freelist_count")
        return json_object(self, (*keys, "reclaimable_bytes", "auto_vacuum"))


@dataclass(frozen=True, slots=True)
class VacuumReport:
    """Space before and after ``vacuum``; ``checkpointed`` is ``None`` off SQLite."""

    before: SpaceStats
    after: SpaceStats
    full: bool
    checkpointed: bool | None

    @property
    def bytes_reclaimed(self) -> int:
        """Return how many bytes the database (with its WAL) shrank by."""
        return _footprint(self.before) - _footprint(self.after)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return json_object(self, ("full", "checkpointed", "bytes_reclaimed", "before", "after"))


def _footprint(stats: SpaceStats) -> int:
    return stats.file_bytes + (stats.wal_bytes or 0)


def _pragma(conn: Connection, name: str) -> int:
    return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def _sqlite_pages(conn: Connection) -> tuple[int, int, int, int]:
    return (
        _pragma(conn, "page_size"),
        _pragma(conn, "page_count"),
        _pragma(conn, "freelist_count"),
        _pragma(conn, "auto_vacuum"),
    )


def space(store: Transactions) -> SpaceStats:
    """Return the size of the database and how much of it vacuum can reclaim."""
    if store.engine.dialect.name != "sqlite":
        size = store.read(lambda conn: int(conn.exec_driver_sql(_POSTGRES_SIZE).scalar_one()))
        return SpaceStats(store.engine.dialect.name, size, None, None, None, None, None)
    page_size, page_count, free, mode = store.read(_sqlite_pages)
    path = store.engine.url.database
    file_bytes = page_size * page_count
    wal_bytes = 0
    if path and path != ":memory:" and os.path.exists(path):
        file_bytes = os.path.getsize(path)
        wal = f"{path}-wal"
        wal_bytes = os.path.getsize(wal) if os.path.exists(wal) else 0
    return SpaceStats(
        "sqlite", file_bytes, wal_bytes, page_size, page_count, free, _AUTO_VACUUM_MODES.get(mode, str(mode))
    )


@contextlib.contextmanager
def _driver_connection(engine: Engine) -> Iterator[Any]:
    """Yield a pooled DB-API connection with no transaction open, for what cannot run in one."""
    with errors_of_database(), engine.connect() as conn:
        yield conn.connection.driver_connection


def _incremental_step(conn: Connection) -> tuple[int, int]:
    before = _pragma(conn, "freelist_count")
    # The pragma frees one page each time its statement is stepped, and sqlite3
    # steps a statement with no result columns only once (fetching steps no
    # further): so it runs once a page, up to a step's worth in this transaction.
    for _ in range(min(before, VACUUM_STEP_PAGES)):
        conn.exec_driver_sql("PRAGMA incremental_vacuum(1)")
    return before, _pragma(conn, "freelist_count")


def _sqlite_vacuum(store: Transactions, full: bool, progress: Progress | None) -> bool:
    """Reclaim free pages, then checkpoint the WAL; return whether the checkpoint completed."""
    if full:
        with _driver_connection(store.engine) as driver:
            # Turns incremental auto-vacuum on for a file made before it was the default.
            driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
            driver.execute("VACUUM")
        if progress is not None:
            progress(1, 1)
    else:
        total = None
        while True:
            before, after = store.write(_incremental_step)
            total = before if total is None else total
            if progress is not None:
                progress(total - after, total)
            if after == 0 or after >= before:
                break
    with _driver_connection(store.engine) as driver:
        busy, _log, _done = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return bool(busy == 0)


def vacuum(store: Transactions, *, full: bool = False, progress: Progress | None = None) -> VacuumReport:
    """Give free space back to the file system and report the sizes before and after.

    On SQLite: ``PRAGMA incremental_vacuum`` in short steps (or, with ``full``,
    a ``VACUUM`` that rewrites the file and turns incremental auto-vacuum on),
    then a ``TRUNCATE`` checkpoint so that the file and its WAL really shrink.
    On PostgreSQL: ``VACUUM`` (``VACUUM FULL``) of the store's tables.
    """
    before = space(store)
    checkpointed: bool | None = None
    if store.engine.dialect.name == "sqlite":
        checkpointed = _sqlite_vacuum(store, full, progress)
    else:
        statement = "VACUUM FULL observations, cells" if full else "VACUUM observations, cells"
        with (
            errors_of_database(),
            store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            conn.exec_driver_sql(statement)
        if progress is not None:
            progress(1, 1)
    return VacuumReport(before, space(store), full, checkpointed)
