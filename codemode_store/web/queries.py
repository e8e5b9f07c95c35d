"""The few reads a page needs beyond the CLI's listings: when each generation began, and its request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from ..observation import from_micros
from ..schema import observations
from ..store import ObservationStore

__all__ = ["begun_and_requests"]

o = observations.c

_begun_and_requests = (
    select(o.generation, o.begun_at, o.request)
    .where(
        o.session_id == bindparam("p_session_id"),
        o.cell_id == bindparam("p_cell_id"),
        o.generation >= bindparam("p_first", type_=o.generation.type),
        o.generation <= bindparam("p_last", type_=o.generation.type),
    )
    .order_by(o.generation)
)


def begun_and_requests(
    store: ObservationStore, session_id: str, cell_id: str, first: int, last: int
) -> dict[int, tuple[datetime | None, str | None]]:
    """Return, per generation from ``first`` to ``last``, when it began and its request (canonical JSON)."""
    params: dict[str, Any] = {
        "p_session_id": session_id,
        "p_cell_id": cell_id,
        "p_first": first,
        "p_last": last,
    }

    def read(conn: Connection) -> dict[int, tuple[datetime | None, str | None]]:
        rows = conn.execute(_begun_and_requests, params)
        return {int(gen): (from_micros(begun), request) for gen, begun, request in rows}

    return store.read(read, session_id=session_id)
