"""The raw sqlite3 baseline: what a careful host would write by hand.

Same file and schema as the store (created by ``ObservationStore.open``), the
same connection settings (WAL, the store's ``synchronous``, a 5 s busy timeout,
foreign keys on) and one ``BEGIN IMMEDIATE`` transaction per step, with the
same guarded statements, row-count checks and columns written (payload, size,
sha256, times). It skips what only the store does: argument validation, the
error hierarchy, rare-case reads (it raises on a rejection instead), SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["RawHost", "encode_body"]

T = TypeVar("T")

_INSERT_CELL = (
    "INSERT INTO cells (session_id, cell_id, closed, last_generation, created_at) VALUES (?, ?, 0, NULL, ?)"
)
_ADVANCE = (
    "UPDATE cells SET last_generation = ? WHERE session_id = ? AND cell_id = ? "
    "AND closed = 0 AND coalesce(last_generation, -1) = ?"
)
_RELEASE_ANY = (
    "UPDATE observations SET state = 'released', payload = NULL, released_at = ? "
    "WHERE session_id = ? AND cell_id = ? AND generation = ? AND payload IS NOT NULL"
)
_INSERT_PENDING = (
    "INSERT INTO observations (session_id, cell_id, generation, state, begun_at, request) "
    "VALUES (?, ?, ?, 'pending', ?, ?)"
)
_CLOSE = "UPDATE cells SET closed = 1 WHERE session_id = ? AND cell_id = ?"
_RECORD = (
    "UPDATE observations SET state = 'retained', kind = ?, payload = ?, payload_bytes = ?, "
    "payload_sha256 = ?, recorded_at = ? "
    "WHERE session_id = ? AND cell_id = ? AND generation = ? AND state = 'pending'"
)
_RELEASE_TERMINAL = (
    "UPDATE observations SET state = 'released', payload = NULL, released_at = ? "
    "WHERE session_id = ? AND cell_id = ? AND generation = ? AND payload IS NOT NULL "
    "AND kind IN ('completed', 'terminated')"
)
_READ = (
    "SELECT state, kind, payload_bytes, payload_sha256, recorded_at, released_at, payload "
    "FROM observations WHERE session_id = ? AND cell_id = ? AND generation = ?"
)
#: ``get`` tells an unknown cell from a missing generation, as the store does.
_READ_WITH_CELL = (
    "SELECT c.closed, o.state, o.kind, o.payload_bytes, o.payload_sha256, o.recorded_at, o.released_at, "
    "o.payload FROM cells AS c LEFT OUTER JOIN observations AS o ON o.session_id = c.session_id "
    "AND o.cell_id = c.cell_id AND o.generation = ? WHERE c.session_id = ? AND c.cell_id = ?"
)


def _now() -> int:
    return time.time_ns() // 1000


def encode_body(body: dict[str, Any]) -> bytes:
    """Return the stored bytes of a wire outcome body (canonical JSON, UTF-8)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RawHost:
    """A hand-written host on the store's file: the same steps in plain sqlite3."""

    def __init__(self, path: str, busy_timeout: float = 5.0, synchronous: str = "NORMAL") -> None:
        """Connect to ``path`` with the store's pragmas (``synchronous`` as the store's durability)."""
        self.conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def _write(self, step: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = step(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def create_cell(self, session: str, cell: str) -> None:
        """Insert an open cell (a duplicate raises ``sqlite3.IntegrityError``)."""
        self._write(lambda conn: conn.execute(_INSERT_CELL, (session, cell, _now())))

    def begin(self, session: str, cell: str, generation: int) -> Any:
        """Advance to ``generation`` (``None``), or return the stored row to replay it."""

        def step(conn: sqlite3.Connection) -> Any:
            now = _now()
            if conn.execute(_ADVANCE, (generation, session, cell, generation - 1)).rowcount == 1:
                if generation > 0:
                    conn.execute(_RELEASE_ANY, (now, session, cell, generation - 1))
                conn.execute(_INSERT_PENDING, (session, cell, generation, now, None))
                return None
            row = conn.execute(_READ, (session, cell, generation)).fetchone()
            if row is None or row[0] != "retained":
                raise RuntimeError(f"cannot begin {session}/{cell}/{generation}")
            return (*row[:6], json.loads(row[6]))

        return self._write(step)

    def record(self, session: str, cell: str, generation: int, body: dict[str, Any]) -> None:
        """Store the outcome of pending ``generation``; a completed one closes the cell."""
        payload = encode_body(body)
        sha = hashlib.sha256(payload).digest()
        kind = body["type"]

        def step(conn: sqlite3.Connection) -> None:
            if kind in ("completed", "terminated") and conn.execute(_CLOSE, (session, cell)).rowcount == 0:
                raise RuntimeError(f"unknown cell {session}/{cell}")
            params = (kind, payload, len(payload), sha, _now(), session, cell, generation)
            if conn.execute(_RECORD, params).rowcount != 1:
                raise RuntimeError(f"not pending {session}/{cell}/{generation}")

        self._write(step)

    def release(self, session: str, cell: str, generation: int) -> bool:
        """Drop a terminal payload; ``True`` if this call dropped it."""
        return self._write(
            lambda conn: conn.execute(_RELEASE_TERMINAL, (_now(), session, cell, generation)).rowcount == 1
        )

    def get(self, session: str, cell: str, generation: int) -> Any:
        """Return one observation's columns with its decoded payload, or ``None``."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            row = conn.execute(_READ_WITH_CELL, (generation, session, cell)).fetchone()
        finally:
            conn.execute("COMMIT")
        if row is None:
            raise RuntimeError(f"unknown cell {session}/{cell}")
        if row[1] is None:
            return None
        return (*row[1:7], None if row[7] is None else json.loads(row[7]))
