"""What is PostgreSQL's own, and what differs between the two backends above the connection.

PostgreSQL's connection-level settings are here (``postgres_connect_args``:
how long a writer waits for a row lock, how long it waits for a server that
does not answer, the text encoding), with how a dead pooled connection is told
apart without a round trip; ``engine.py`` applies them, as it defines and
applies SQLite's. Above the connection, the operations and statements are the
same SQL on both; what is left is how a schema migration keeps other processes
out (``lock_schema``). Which PostgreSQL errors mean "a concurrent writer got in
the way" or "the server is gone" is told by ``translate.py``, with SQLite's
error codes.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.pool import Pool

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "POSTGRES_POOL",
    "discard_dead_connections",
    "is_dead",
    "lock_schema",
    "postgres_connect_args",
]

#: Seconds a new PostgreSQL connection may take (TCP handshake, startup,
#: authentication) before the call fails with ``DatabaseUnavailable``; a
#: ``connect_timeout`` in the URL wins. Also the bound on unacknowledged data
#: and on a silent peer of an established connection (``tcp_user_timeout``,
#: keepalives).
DEFAULT_CONNECT_TIMEOUT = 5

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
    """Return driver arguments: UTF-8 text, a bounded lock wait, and bounded waits on the network.

    - ``lock_timeout`` of ``busy_timeout`` seconds: the same promise as SQLite's
      busy timeout, a writer that waits longer for a row lock gets
      ``DatabaseBusy`` instead of hanging behind a stuck client.
    - ``connect_timeout``: a server that accepts the TCP connection but never
      completes the handshake gives ``DatabaseUnavailable`` within that time.
    - TCP keepalives and ``tcp_user_timeout``: an established connection whose
      server vanished (host down, network cut) fails within about
      ``connect_timeout`` plus a few seconds, whether the client is waiting for
      an answer or still sending. A healthy server that is merely slow (a long
      statement, a lock wait) keeps answering keepalives and is not cut.

    A parameter given in the URL wins over ours; its ``options`` come after
    ours, so a ``lock_timeout`` there wins too.
    """
    # lock_timeout = 0 would mean "wait forever": the opposite of a zero timeout.
    options = f"-c lock_timeout={max(1, round(busy_timeout * 1000))}"
    given = url.query.get("options")
    if isinstance(given, str) and given:
        options = f"{options} {given}"
    connect_timeout = _url_seconds(url, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    network: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "keepalives": 1,
        "keepalives_idle": connect_timeout,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": connect_timeout * 1000,
    }
    # The store reads and writes UTF-8 text. A database created with encoding
    # SQL_ASCII would otherwise hand psycopg bytes where SQLAlchemy expects str.
    args = {"options": options, "client_encoding": "utf8"}
    args.update({name: value for name, value in network.items() if name not in url.query})
    return args


def _url_seconds(url: URL, name: str, default: int) -> int:
    """Return the whole seconds a URL parameter gives (libpq's reading of it), or ``default``."""
    given = url.query.get(name)
    if isinstance(given, str):
        try:
            return max(1, int(given))
        except ValueError:
            return default  # the driver itself reports the bad value when connecting
    return default


#: How many connections one store's pool lends at once on PostgreSQL (5 kept idle, the
#: rest opened for a burst and closed when returned): enough that the threads of a
#: host with many sessions run their calls side by side instead of queueing for a
#: connection (SQLAlchemy's default, 15, would hold the 16th session back).
POSTGRES_POOL: dict[str, int] = {"pool_size": 5, "max_overflow": 59}


def discard_dead_connections(pool: Pool) -> None:
    """Make ``pool`` replace a dead pooled PostgreSQL connection at checkout, without a round trip.

    An idle connection has nothing to read: the server speaks only when asked.
    If its socket is readable, the server has closed it or is closing it (a
    restart, an administrator's termination, a crash: end of file, a reset or a
    FATAL message), so it is discarded, with every connection pooled before it
    (they most likely died with the same server), and the pool connects anew.
    This replaces a ping before every checkout, which cost a round trip per
    transaction; a connection that dies while in use fails that call, and
    SQLAlchemy's disconnect handling discards it then.
    """
    event.listen(pool, "checkout", _check_idle_connection)


def _check_idle_connection(_dbapi_connection: Any, connection_record: Any, _proxy: Any) -> None:
    if is_dead(connection_record.driver_connection):
        raise InvalidatePoolError("the server closed the pooled connection (restarted or stopped)")


def is_dead(driver_connection: Any) -> bool:
    """Tell, without a round trip, whether an idle psycopg connection was closed by its server.

    For a connection between transactions only (nothing may be in flight):
    closed or broken already, or its socket is readable (end of file, a reset,
    or a termination notice; a server sends nothing unasked). One ``poll()``
    system call. Whoever keeps PostgreSQL connections outside the pool checks
    them with this before reuse, as the pool's checkout does.
    """
    if driver_connection is None or driver_connection.closed or driver_connection.broken:
        return True
    poller = select.poll()
    poller.register(driver_connection.pgconn.socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
