"""Read-only views of a store for people and scripts: sessions, one observation, totals.

The query functions take an open :class:`ObservationStore` and only read.
:func:`record` turns any of the values they return (and the store's own
``Observation`` and ``CellSummary``) into a JSON object with the stable keys
listed in ``RECORD_KEYS`` (documented in docs/cli.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, distinct, func, select

from . import migrate, space
from .admin import file_sizes, shown
from .calls import Call
from .errors import FutureGeneration, NoOutcome, UnknownCell
from .observation import CellSummary, Observation
from .schema import cells, observations
from .store import ObservationStore
from .translate import errors_of_database
from .validation import check_identifier

__all__ = [
    "RECORD_KEYS",
    "NoOutcome",
    "SessionSummary",
    "StoreStats",
    "observation",
    "record",
    "sessions",
    "stats",
    "wire_outcome",
]

o = observations.c
c = cells.c


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One session: how many cells (and open ones), observations, retained bytes, last activity."""

    session_id: str
    cells: int
    open_cells: int
    observations: int
    retained_bytes: int
    last_activity: datetime


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals of a store; ``file_bytes`` and ``wal_bytes`` only for a SQLite file."""

    database: str
    backend: str
    schema_revision: str | None
    head_revision: str
    sessions: int
    cells: int
    observations: int
    retained: int
    released: int
    pending: int
    failed: int
    retained_bytes: int
    file_bytes: int | None
    wal_bytes: int | None
    free_pages: int | None
    reclaimable_bytes: int | None


#: The keys of the JSON object of each record type, in output order.
RECORD_KEYS: dict[type, tuple[str, ...]] = {
    SessionSummary: ("session_id", "cells", "open_cells", "observations", "retained_bytes", "last_activity"),
    CellSummary: (
        "session_id",
        "cell_id",
        "closed",
        "last_generation",
        "last_state",
        "last_kind",
        "observations",
        "retained_bytes",
        "created_at",
        "last_activity",
    ),
    Observation: (
        "session_id",
        "cell_id",
        "generation",
        "state",
        "kind",
        "payload_bytes",
        "payload_sha256",
        "recorded_at",
        "released_at",
        "error_text",
    ),
    StoreStats: (
        "database",
        "backend",
        "schema_revision",
        "head_revision",
        "sessions",
        "cells",
        "observations",
        "retained",
        "released",
        "pending",
        "failed",
        "retained_bytes",
        "file_bytes",
        "wal_bytes",
        "free_pages",
        "reclaimable_bytes",
    ),
}


def record(value: SessionSummary | CellSummary | Observation | StoreStats) -> dict[str, Any]:
    """Return the JSON object of a value: its ``RECORD_KEYS``, times as ISO 8601 UTC."""
    result: dict[str, Any] = {}
    for key in RECORD_KEYS[type(value)]:
        item = getattr(value, key)
        result[key] = item.isoformat() if isinstance(item, datetime) else item
    return result


# -- sessions ---------------------------------------------------------------------------


def sessions(store: ObservationStore) -> list[SessionSummary]:
    """Return one summary per session that has cells, ordered by session id."""
    # Folded from the cell summaries (one read, ordered by session), so that a
    # session's bytes and last activity are by definition those of its cells.
    by_session: dict[str, list[CellSummary]] = {}
    for cell in store.cells():
        by_session.setdefault(cell.session_id, []).append(cell)
    return [
        SessionSummary(
            session_id=session_id,
            cells=len(found),
            open_cells=sum(not cell.closed for cell in found),
            observations=sum(cell.observations for cell in found),
            retained_bytes=sum(cell.retained_bytes for cell in found),
            last_activity=max(cell.last_activity for cell in found),
        )
        for session_id, found in by_session.items()
    ]


# -- one observation ----------------------------------------------------------------------


def observation(
    store: ObservationStore, session_id: str, cell_id: str, generation: int | None
) -> Observation:
    """Return one observation; ``generation=None`` means the cell's last one.

    ``UnknownCell`` when the session does not know the cell, ``FutureGeneration``
    when the cell has no such generation (or none yet).
    """
    handle = store.session(session_id)
    if generation is None:
        session = handle.session_id
        cell = check_identifier(cell_id, "cell_id", session_id=session)
        summary = next((s for s in handle.cells() if s.cell_id == cell), None)
        if summary is None:
            raise UnknownCell("the session does not know this cell", session_id=session, cell_id=cell)
        if summary.last_generation is None:
            raise FutureGeneration("the cell has no observation yet", session_id=session, cell_id=cell)
        generation = summary.last_generation
    found = handle.get(cell_id, generation)
    if found is None:
        raise FutureGeneration(
            "the cell has no such generation yet",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    return found


def wire_outcome(found: Observation) -> dict[str, Any]:
    """Return the wire outcome of a retained observation; ``NoOutcome`` in any other state."""
    if found.outcome is None:
        raise NoOutcome(
            f"the generation is {found.state}, so it holds no outcome to print",
            session_id=found.session_id,
            cell_id=found.cell_id,
            generation=found.generation,
        )
    return found.outcome.to_wire(found.cell_id)


# -- stats -----------------------------------------------------------------------------------

_count_sessions = select(func.count(distinct(c.session_id)))
_count_cells = select(func.count()).select_from(cells)
_by_state = select(o.state, func.count(), func.coalesce(func.sum(o.payload_bytes), 0)).group_by(o.state)


def _read_totals(conn: Connection, _now: int) -> tuple[int, int, dict[str, tuple[int, int]]]:
    n_sessions = int(conn.execute(_count_sessions).scalar_one())
    n_cells = int(conn.execute(_count_cells).scalar_one())
    states = {state: (int(count), int(size)) for state, count, size in conn.execute(_by_state)}
    return n_sessions, n_cells, states


def stats(store: ObservationStore) -> StoreStats:
    """Return the totals of the store, its schema revision and (SQLite) its file sizes."""
    n_sessions, n_cells, states = store.run(Call(_read_totals, writes=False))
    file_bytes, wal_bytes = file_sizes(store.url)
    with errors_of_database():
        revision = migrate.current_revision(store.engine)
    free_pages = reclaimable = None
    if store.engine.dialect.name == "sqlite":
        room = space.space(store)
        free_pages, reclaimable = room.freelist_count, room.reclaimable_bytes

    def count(state: str) -> int:
        return states.get(state, (0, 0))[0]

    return StoreStats(
        database=shown(store.url),
        backend=store.url.get_backend_name(),
        schema_revision=revision,
        head_revision=migrate.HEAD_REVISION,
        sessions=n_sessions,
        cells=n_cells,
        observations=sum(n for n, _ in states.values()),
        retained=count("retained"),
        released=count("released"),
        pending=count("pending"),
        failed=count("failed"),
        retained_bytes=sum(states.get(s, (0, 0))[1] for s in ("retained", "failed")),
        file_bytes=file_bytes,
        wal_bytes=wal_bytes,
        free_pages=free_pages,
        reclaimable_bytes=reclaimable,
    )
