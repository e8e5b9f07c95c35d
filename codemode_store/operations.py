"""The operations of SPEC §3, one function each, rules in the spec's order.

Each function runs inside a transaction its caller opened (see ``store.py``)
and raises a :mod:`~codemode_store.errors` subclass to reject; the caller rolls
back, so a rejection leaves the database as it was. Arguments arrive already
validated. Common cases take one guarded statement whose row count decides;
the rarer cases read to find out which rule applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from . import statements as sql
from .errors import (
    AlreadyReleased,
    CellClosed,
    DatabaseError,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    UnknownCell,
)
from .observation import CellSummary, Observation, ObservationState, from_micros
from .wire import CLOSING_KINDS, Outcome, OutcomeKind, decode_payload

__all__ = [
    "PreparedPayload",
    "begin",
    "cells",
    "close_cell",
    "create_cell",
    "end_session",
    "fail",
    "fail_pending",
    "get",
    "history",
    "pending",
    "record",
    "release",
]


class PreparedPayload:
    """Payload bytes with their length and raw sha256 digest, computed once outside the transaction."""

    __slots__ = ("data", "sha256", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).digest()

    def params(self) -> dict[str, Any]:
        """Return the bind parameters that store this payload."""
        return {"p_payload": self.data, "p_payload_bytes": self.size, "p_payload_sha256": self.sha256}


def _key(session_id: str, cell_id: str, generation: int | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"p_session_id": session_id, "p_cell_id": cell_id}
    if generation is not None:
        key["p_generation"] = generation
    return key


def _unknown(session_id: str, cell_id: str, generation: int | None = None) -> UnknownCell:
    return UnknownCell(
        "the session does not know this cell",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


def _lock_cell(conn: Connection, session_id: str, cell_id: str, generation: int | None) -> Any:
    row = conn.execute(sql.lock_cell, _key(session_id, cell_id)).first()
    if row is None:
        raise _unknown(session_id, cell_id, generation)
    return row


def to_observation(row: Sequence[Any]) -> Observation:
    """Return the Observation of a row selected with ``OBSERVATION_COLUMNS``."""
    (session_id, cell_id, generation, state, kind, size, sha, recorded, released, payload) = row
    outcome = None
    error_text = None
    try:
        sha256 = None if sha is None else sha.hex()
        if state == "retained":
            outcome = decode_payload(payload)
        elif state == "failed":
            # Text already (PayloadText), unless the bytes are not UTF-8: then this raises.
            error_text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        # Only a file altered behind the store's back gets here: say so, never
        # let a decoder's own exception out of the public API.
        raise DatabaseError(
            f"the stored payload does not decode ({type(exc).__name__}); the database was "
            "altered or damaged (`codemode-store check` lists such rows)",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        ) from exc
    return Observation(
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
        state=cast(ObservationState, state),
        kind=cast("OutcomeKind | None", kind),
        outcome=outcome,
        error_text=error_text,
        payload_bytes=size,
        payload_sha256=sha256,
        recorded_at=from_micros(recorded),
        released_at=from_micros(released),
    )


# -- create_cell --------------------------------------------------------------


def create_cell(conn: Connection, now: int, session_id: str, cell_id: str) -> None:
    """Register an open cell; a second create of it is ``DuplicateCell``."""
    try:
        conn.execute(sql.insert_cell, {**_key(session_id, cell_id), "p_now": now})
    except IntegrityError as exc:
        raise DuplicateCell(
            "the session already has this cell", session_id=session_id, cell_id=cell_id
        ) from exc


# -- begin ----------------------------------------------------------------------


def begin(
    conn: Connection,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    request: str | None,
) -> Observation | None:
    """Start generation ``generation`` or replay it (SPEC §3 ``begin``)."""
    key = _key(session_id, cell_id, generation)
    # The common case: the next generation of an open cell. The guarded UPDATE
    # both checks that and takes the cell's row lock.
    advanced = conn.execute(sql.advance_cell, {**key, "p_previous": generation - 1}).rowcount
    if advanced == 1:
        if generation > 0:
            _acknowledge_previous(conn, now, session_id, cell_id, generation)
        conn.execute(sql.insert_pending, {**key, "p_now": now, "p_request": request})
        return None

    _closed, last = _lock_cell(conn, session_id, cell_id, generation)
    next_generation = 0 if last is None else last + 1
    if generation > next_generation:
        raise FutureGeneration(
            f"the cell's next generation is {next_generation}",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    if generation == next_generation:
        # advance_cell refused the next generation: only a closed cell does that.
        raise CellClosed(
            "the cell is closed; no later generation will come",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    row = conn.execute(sql.read_observation, key).one()
    state = row.state
    if state == "pending":
        raise ObservationInProgress(
            "the generation is still pending", session_id=session_id, cell_id=cell_id, generation=generation
        )
    if state == "released":
        raise AlreadyReleased(
            "the generation was already released",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    if request is not None and row.request is not None and request != row.request:
        raise GenerationConflict(
            f"the request {request} differs from the stored {row.request}",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    return to_observation(row[:10])


def _acknowledge_previous(conn: Connection, now: int, session_id: str, cell_id: str, generation: int) -> None:
    """Release generation g−1 for begin(g): asking for g proves Core consumed g−1."""
    previous = _key(session_id, cell_id, generation - 1)
    if conn.execute(sql.release_any, {**previous, "p_now": now}).rowcount == 1:
        return
    row = conn.execute(sql.read_state, previous).first()
    if row is not None and row.state == "pending":
        raise ObservationInProgress(
            f"generation {generation - 1} is still pending",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )


# -- record and fail ------------------------------------------------------------


def record(
    conn: Connection,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    outcome: Outcome,
    payload: PreparedPayload,
) -> None:
    """Store the outcome of pending ``generation`` (SPEC §3 ``record``)."""
    key = _key(session_id, cell_id, generation)
    # Close first: it takes the cell's lock before the observation's, the order
    # every writer uses. A rejection below rolls the close back.
    if outcome.kind in CLOSING_KINDS and conn.execute(sql.close_cell, key).rowcount == 0:
        raise _unknown(session_id, cell_id, generation)
    params = {**key, **payload.params(), "p_kind": outcome.kind, "p_now": now}
    if conn.execute(sql.record, params).rowcount == 1:
        return
    _lock_cell(conn, session_id, cell_id, generation)
    row = conn.execute(sql.read_observation, key).first()
    if row is not None and row.state == "retained":
        if row.payload_sha256 == payload.sha256 and row.kind == outcome.kind:
            return  # the same outcome again: an idempotent retry
        raise GenerationConflict(
            "the generation already holds a different outcome",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    raise _not_pending(row, session_id, cell_id, generation)


def fail(
    conn: Connection,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    payload: PreparedPayload,
) -> None:
    """Mark pending ``generation`` failed with an error text (SPEC §3 ``fail``)."""
    key = _key(session_id, cell_id, generation)
    if conn.execute(sql.fail, {**key, **payload.params(), "p_now": now}).rowcount == 1:
        return
    _lock_cell(conn, session_id, cell_id, generation)
    raise _not_pending(conn.execute(sql.read_state, key).first(), session_id, cell_id, generation)


def _not_pending(row: Any, session_id: str, cell_id: str, generation: int) -> NotPending:
    what = "does not exist" if row is None else f"is {row.state}"
    return NotPending(
        f"the generation {what}, not pending",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


def fail_pending(conn: Connection, now: int, payload: PreparedPayload) -> int:
    """Turn every pending row of the store into ``failed``; return how many."""
    return int(conn.execute(sql.fail_all_pending, {**payload.params(), "p_now": now}).rowcount)


# -- release ----------------------------------------------------------------------


def release(conn: Connection, now: int, session_id: str, cell_id: str, generation: int) -> bool:
    """Acknowledge ``generation`` (SPEC §3 ``release``); ``True`` if this call dropped it."""
    key = _key(session_id, cell_id, generation)
    if conn.execute(sql.release_terminal, {**key, "p_now": now}).rowcount == 1:
        return True
    closed, last = _lock_cell(conn, session_id, cell_id, generation)
    if last is None or generation > last:
        raise FutureGeneration(
            "the cell has no such generation yet",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    row = conn.execute(sql.read_state, key).one()
    state, kind = row.state, row.kind
    if state == "released":
        return False
    if state in ("pending", "failed"):
        raise NotReleasable(
            f"the generation is {state}", session_id=session_id, cell_id=cell_id, generation=generation
        )
    if kind == "yielded" and closed and generation == last:
        # A closed cell's trailing yield: no successor will ever acknowledge it.
        return bool(conn.execute(sql.release_any, {**key, "p_now": now}).rowcount == 1)
    raise NotReleasable(
        f"a {kind} outcome is not terminal; Core acknowledges it by asking for the next generation",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


# -- close_cell, end_session -----------------------------------------------------


def close_cell(conn: Connection, session_id: str, cell_id: str) -> None:
    """Mark the cell closed; closing a closed cell changes nothing."""
    if conn.execute(sql.close_cell, _key(session_id, cell_id)).rowcount == 0:
        raise _unknown(session_id, cell_id)


def end_session(conn: Connection, session_id: str) -> int:
    """Delete every row of the session; return how many observations went."""
    conn.execute(sql.lock_session_cells, {"p_session_id": session_id}).all()
    deleted = conn.execute(sql.delete_session_observations, {"p_session_id": session_id}).rowcount
    conn.execute(sql.delete_session_cells, {"p_session_id": session_id})
    return int(deleted)


# -- reads ---------------------------------------------------------------------------


def get(conn: Connection, session_id: str, cell_id: str, generation: int) -> Observation | None:
    """Return one observation, or ``None`` when the cell has no such generation."""
    row = conn.execute(sql.read_cell_and_observation, _key(session_id, cell_id, generation)).first()
    if row is None:
        raise _unknown(session_id, cell_id, generation)
    if row.generation is None:
        return None
    return to_observation(row[2:])


def history(conn: Connection, session_id: str, cell_id: str) -> list[Observation]:
    """Return every observation of the cell in generation order."""
    if conn.execute(sql.read_cell, _key(session_id, cell_id)).first() is None:
        raise _unknown(session_id, cell_id)
    return [to_observation(row) for row in conn.execute(sql.read_history, _key(session_id, cell_id))]


def pending(conn: Connection) -> list[Observation]:
    """Return every pending observation of the store."""
    return [to_observation(row) for row in conn.execute(sql.read_pending)]


def cells(conn: Connection, session_id: str | None) -> list[CellSummary]:
    """Return summaries of the cells of one session, or of every session."""
    if session_id is None:
        rows = conn.execute(sql.cell_summaries)
    else:
        rows = conn.execute(sql.cell_summaries_of_session, {"p_session_id": session_id})
    return [_summary(row) for row in rows]


def _summary(row: Sequence[Any]) -> CellSummary:
    (session_id, cell_id, closed, last, state, kind, count, retained, created, *times) = row
    created_at = from_micros(created)
    activity = max([created, *(t for t in times if t is not None)])
    assert created_at is not None
    return CellSummary(
        session_id=session_id,
        cell_id=cell_id,
        closed=bool(closed),
        last_generation=last,
        last_state=state,
        last_kind=kind,
        observations=int(count),
        retained_bytes=int(retained),
        created_at=created_at,
        last_activity=from_micros(activity) or created_at,
    )
