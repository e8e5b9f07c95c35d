"""PostgreSQL: round trips per cell, and cells/s against a naive psycopg host, through a counting proxy.

Both hosts run the host loop of ``host_loop.py`` (create, begin 0, record a
yield, begin 1, record the completion, release it) on a fresh database of the
server, each through the loopback proxy of ``tcp_proxy.py``, which counts the
round trips and can hold every answer of the server back by some milliseconds:
a server across a network.

The naive host is what a careful host writes with psycopg by hand: the store's
guarded statements and row-count checks, one transaction per operation (psycopg
sends ``BEGIN`` before the first statement, then ``COMMIT``). The store runs
each operation's common path as one statement in autocommit.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

from codemode_store import ObservationStore

from .common import alternate, median
from .host_loop import HostPayloads, raw_cells, store_cells
from .raw import encode_body

__all__ = ["NaiveHost", "measure"]

WARM_UP_CELLS = 6

_INSERT_CELL = (
    "INSERT INTO cells (session_id, cell_id, closed, last_generation, created_at) "
    "VALUES (%s, %s, false, NULL, %s)"
)
_ADVANCE = (
    "UPDATE cells SET last_generation = %s WHERE session_id = %s AND cell_id = %s "
    "AND NOT closed AND coalesce(last_generation, -1) = %s"
)
_RELEASE_ANY = (
    "UPDATE observations SET state = 'released', payload = NULL, released_at = %s "
    "WHERE session_id = %s AND cell_id = %s AND generation = %s AND payload IS NOT NULL"
)
_INSERT_PENDING = (
    "INSERT INTO observations (session_id, cell_id, generation, state, begun_at, request) "
    "VALUES (%s, %s, %s, 'pending', %s, %s)"
)
_CLOSE = "UPDATE cells SET closed = true WHERE session_id = %s AND cell_id = %s"
_RECORD = (
    "UPDATE observations SET state = 'retained', kind = %s, payload = %s, payload_bytes = %s, "
    "payload_sha256 = %s, recorded_at = %s "
    "WHERE session_id = %s AND cell_id = %s AND generation = %s AND state = 'pending'"
)
_RELEASE_TERMINAL = (
    "UPDATE observations SET state = 'released', payload = NULL, released_at = %s "
    "WHERE session_id = %s AND cell_id = %s AND generation = %s AND payload IS NOT NULL "
    "AND kind IN ('completed', 'terminated')"
)


def _now() -> int:
    return time.time_ns() // 1000


class NaiveHost:
    """The host loop in plain psycopg: BEGIN, the statements, COMMIT for every operation."""

    def __init__(self, url: URL) -> None:
        """Connect to ``url``'s database (a SQLAlchemy URL of the psycopg driver)."""
        import psycopg

        self.conn = psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=10,
        )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def _write(self, step: Callable[[Any], object]) -> None:
        try:
            with self.conn.cursor() as cursor:
                step(cursor)
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def create_cell(self, session: str, cell: str) -> None:
        """Insert an open cell."""
        self._write(lambda cur: cur.execute(_INSERT_CELL, (session, cell, _now())))

    def begin(self, session: str, cell: str, generation: int) -> None:
        """Advance to ``generation``, releasing the one before (no replays in this loop)."""

        def step(cur: Any) -> None:
            now = _now()
            cur.execute(_ADVANCE, (generation, session, cell, generation - 1))
            if cur.rowcount != 1:
                raise RuntimeError(f"cannot begin {session}/{cell}/{generation}")
            if generation > 0:
                cur.execute(_RELEASE_ANY, (now, session, cell, generation - 1))
            cur.execute(_INSERT_PENDING, (session, cell, generation, now, None))

        self._write(step)

    def record(self, session: str, cell: str, generation: int, body: dict[str, Any]) -> None:
        """Store the outcome of pending ``generation``; a completed one closes the cell."""
        payload = encode_body(body)
        sha = hashlib.sha256(payload).digest()
        kind = body["type"]

        def step(cur: Any) -> None:
            if kind in ("completed", "terminated"):
                cur.execute(_CLOSE, (session, cell))
            params = (kind, payload, len(payload), sha, _now(), session, cell, generation)
            cur.execute(_RECORD, params)
            if cur.rowcount != 1:
                raise RuntimeError(f"not pending {session}/{cell}/{generation}")

        self._write(step)

    def release(self, session: str, cell: str, generation: int) -> None:
        """Drop a terminal payload."""
        self._write(lambda cur: cur.execute(_RELEASE_TERMINAL, (_now(), session, cell, generation)))


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[URL]:
    """Yield the URL of a new, empty database on the server; drop it afterwards."""
    base = make_url(server_url)
    name = f"bench_{uuid.uuid4().hex}"  # made here, never from input: safe to spell into the SQL
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def measure(
    server_url: str, cells: int, rounds: int, delays: tuple[float, ...] = (0.0, 1.0)
) -> dict[str, Any]:
    """Return round trips per cell of both hosts, and their seconds per round at each added latency."""
    from .tcp_proxy import TcpProxy

    payloads = HostPayloads.build()
    counter = itertools.count()

    def batch() -> list[str]:
        start = next(counter) * cells
        return [f"cell-{n}" for n in range(start, start + cells)]

    with scratch_database(server_url) as url:
        ObservationStore.open(url).close()  # the schema, by Alembic
        with TcpProxy(str(url.host), int(url.port or 5432)) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port)
            # A host of several: with a host id (fenced begin, owned record), its
            # lease renewed every 10 s in the background (none falls in a count).
            store = ObservationStore.open(proxied, host_id="bench-host")
            anonymous = ObservationStore.open(proxied)
            naive = NaiveHost(proxied)
            try:
                variants = {
                    "store": lambda: store_cells(store, "s", batch(), payloads),
                    "naive": lambda: raw_cells(naive, "n", batch(), payloads),
                }
                counted = {**variants, "anonymous": lambda: store_cells(anonymous, "a", batch(), payloads)}
                # Warm up: connections, and psycopg's server-side prepare, which takes
                # one more round trip the fifth time a statement runs on a connection.
                for _ in range(-(-WARM_UP_CELLS // cells)):
                    for run in counted.values():
                        run()
                round_trips = {}
                for name, run in counted.items():
                    proxy.reset()
                    run()
                    round_trips[name] = proxy.counters().round_trips / cells
                seconds: dict[str, dict[str, list[float]]] = {}
                for delay in delays:
                    proxy.delay_ms = delay
                    seconds[f"{delay:g} ms"] = alternate(variants, rounds)
                proxy.delay_ms = 0.0
            finally:
                store.close()
                anonymous.close()
                naive.close()
    return {
        "cells_per_round": cells,
        "round_trips_per_cell": round_trips,
        "seconds": {
            delay: {name: [round(t, 6) for t in times] for name, times in by_host.items()}
            for delay, by_host in seconds.items()
        },
        "cells_per_s": {
            delay: {name: round(cells / median(times)) for name, times in by_host.items()}
            for delay, by_host in seconds.items()
        },
    }
