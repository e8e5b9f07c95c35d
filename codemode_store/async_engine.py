"""Engines for asyncio hosts: the same database and settings through async drivers.

SQLite runs through ``aiosqlite`` and PostgreSQL through psycopg 3's async mode,
whatever driver the URL names. A SQLite engine gets ``engine.py``'s own
``connect`` and ``begin`` listeners on its ``sync_engine``, so busy timeout,
``synchronous`` and ``BEGIN IMMEDIATE`` are set in one place for both front ends;
a PostgreSQL one gets the sync engine's timeouts (``postgres_connect_args``) and
its check of pooled connections (``discard_dead_connections``).
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .deadline import DEFAULT_CALL_TIMEOUT
from .dialects import POSTGRES_POOL, discard_dead_connections, postgres_connect_args
from .engine import Durability, configure_sqlite, is_memory, is_sqlite
from .errors import DatabaseError, InvalidInput

__all__ = ["async_url", "build_async_engine", "schema_url"]

#: Backend -> (driver of the async engine, driver of the sync engine that owns the schema).
_DRIVERS = {
    "sqlite": ("sqlite+aiosqlite", "sqlite+pysqlite"),
    "postgresql": ("postgresql+psycopg", "postgresql+psycopg"),
}


def _drivers(url: URL) -> tuple[str, str]:
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise InvalidInput(f"the asyncio store runs on SQLite or PostgreSQL, not {backend!r}")
    if backend == "sqlite" and is_memory(url):
        # aiosqlite shares one connection among all tasks for an in-memory
        # database, so concurrent transactions would run into each other.
        raise InvalidInput("the asyncio store needs a database file, not an in-memory SQLite database")
    return _DRIVERS[backend]


def async_url(url: URL) -> URL:
    """Return ``url`` with the async driver of its backend (aiosqlite or psycopg)."""
    return url.set(drivername=_drivers(url)[0])


def schema_url(url: URL) -> URL:
    """Return ``url`` with the sync driver that creates or upgrades the schema."""
    return url.set(drivername=_drivers(url)[1])


def build_async_engine(
    url: URL, *, durability: Durability, busy_timeout: float, call_timeout: float = DEFAULT_CALL_TIMEOUT
) -> AsyncEngine:
    """Return an asyncio engine for ``url`` with the store's connection settings.

    Run it after the sync engine of :func:`schema_url` has created the file and
    its schema: the file's own settings (0600 mode, WAL) are made there.
    """
    target = async_url(url)
    try:
        if not is_sqlite(target):
            # As the sync engine: no pre-ping, dead connections discarded at checkout.
            async_engine = create_async_engine(
                target,
                connect_args=postgres_connect_args(target, busy_timeout, call_timeout),
                **POSTGRES_POOL,
            )
            discard_dead_connections(async_engine.sync_engine.pool)
            return async_engine
        engine = create_async_engine(target)
    except ImportError as exc:
        raise DatabaseError(
            f"the driver of {target.drivername!r} is not installed ({exc}): install codemode-store[async]"
        ) from exc
    except SQLAlchemyError as exc:  # a bad option in the URL
        raise InvalidInput(f"cannot use database URL {target.render_as_string()!r}: {exc}") from exc
    configure_sqlite(engine.sync_engine, durability=durability, busy_timeout=busy_timeout)
    return engine
