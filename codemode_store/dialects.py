"""What differs between SQLite and PostgreSQL above the connection level.

``engine.py`` holds the connection settings; the operations and statements are
the same SQL on both. What is left is here: how a schema migration keeps other
processes out, how long a PostgreSQL writer waits for a row lock, and which
PostgreSQL errors mean "a concurrent writer got in the way".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL

__all__ = ["POSTGRES_BUSY_SQLSTATES", "lock_schema", "postgres_connect_args"]

#: SQLSTATEs of PostgreSQL errors that a retry of the operation can overcome:
#: serialization failure, deadlock detected, lock not available (lock_timeout).
POSTGRES_BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})

# An arbitrary constant naming the store's schema lock among the advisory locks
# of the database (the bytes of "cmstore" as an integer).
_SCHEMA_LOCK_KEY = 0x636D73746F7265

_LOCK_SCHEMA = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=_SCHEMA_LOCK_KEY)


def lock_schema(conn: Connection) -> None:
    """Keep other processes from migrating the schema until ``conn``'s transaction ends.

    On SQLite the write transaction (``BEGIN IMMEDIATE``) already excludes every
    other writer. PostgreSQL runs DDL beside other transactions, so two hosts
    opening one new database would both create the tables; a transaction-level
    advisory lock makes the second wait, then find the schema at head.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SCHEMA)


def postgres_connect_args(url: URL, busy_timeout: float) -> dict[str, Any]:
    """Return driver arguments: UTF-8 text, and a lock wait bounded by ``busy_timeout`` seconds.

    The same promise as SQLite's busy timeout: a writer that waits longer for a
    row lock gets ``DatabaseBusy`` instead of hanging behind a stuck client.
    Options given in the URL come after ours, so a ``lock_timeout`` there wins.
    """
    # lock_timeout = 0 would mean "wait forever": the opposite of a zero timeout.
    options = f"-c lock_timeout={max(1, round(busy_timeout * 1000))}"
    given = url.query.get("options")
    if isinstance(given, str) and given:
        options = f"{options} {given}"
    # The store reads and writes UTF-8 text. A database created with encoding
    # SQL_ASCII would otherwise hand psycopg bytes where SQLAlchemy expects str.
    return {"options": options, "client_encoding": "utf8"}
