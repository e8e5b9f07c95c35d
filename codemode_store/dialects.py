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

from .deadline import DEFAULT_CALL_TIMEOUT

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


def postgres_connect_args(
    url: URL, busy_timeout: float, call_timeout: float = DEFAULT_CALL_TIMEOUT
) -> dict[str, Any]:
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
    - ``idle_in_transaction_session_timeout`` of ``call_timeout``: a host
      frozen (stopped, paused) inside a transaction holds its row locks at
      most that long; the server then ends its session. No store transaction
      legitimately idles that long: the call would have timed out.
    - ``connect_timeout`` is at most ``call_timeout`` (whole seconds, at
      least psycopg's 2), so a call that has to connect still keeps its
      bound; a frozen server under an open connection is ``deadline.py``'s job.

    A parameter given in the URL wins over ours (a ``connect_timeout`` there
    only up to ``call_timeout``); its ``options`` come after ours, so a
    ``lock_timeout`` there wins too.
    """
    # lock_timeout = 0 would mean "wait forever": the opposite of a zero timeout.
    options = (
        f"-c lock_timeout={max(1, round(busy_timeout * 1000))} "
        f"-c idle_in_transaction_session_timeout={round(call_timeout * 1000)}"
    )
    given = url.query.get("options")
    if isinstance(given, str) and given:
        options = f"{options} {given}"
    connect_timeout = _url_seconds(url, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    longest = max(2, int(call_timeout))
    clamped = connect_timeout > longest
    connect_timeout = min(connect_timeout, longest)
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
    args: dict[str, Any] = {"options": options, "client_encoding": "utf8"}
    args.update({name: value for name, value in network.items() if name not in url.query})
    if clamped:
        args["connect_timeout"] = connect_timeout  # wins over the URL's (connect_args do)
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

    A connection made for this very checkout is not checked: were it found
    dead (a connection cut just after it was made), the pool would connect
    again and, after a few such, raise an error that says nothing of the
    server; its first statement fails instead, as ``DatabaseUnavailable``.
    """
    event.listen(pool, "connect", _mark_new_connection)
    event.listen(pool, "checkout", _check_idle_connection)


_NEW = "codemode_store_new"


def _mark_new_connection(_dbapi_connection: Any, connection_record: Any) -> None:
    connection_record.info[_NEW] = True


def _check_idle_connection(_dbapi_connection: Any, connection_record: Any, _proxy: Any) -> None:
    if connection_record.info.pop(_NEW, False):
        return
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
