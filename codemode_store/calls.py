"""Prepared calls: an operation with its arguments checked, ready to run.

Each function here validates its arguments (``InvalidInput`` before anything
touches the database), prepares what can be prepared outside a transaction
(payload bytes, sha256, canonical request JSON), and returns a :class:`Call`.
A front end (``ObservationStore``, or the asyncio one) runs the call in one
transaction; so the rules live once, in ``operations.py``, whatever runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from . import operations as ops
from .errors import InvalidInput, StoreError
from .observation import CellSummary, Observation, from_micros
from .validation import canonical_request, check_generation, check_identifier, is_encodable
from .wire import Outcome, encode_payload

__all__ = [
    "DEFAULT_FAIL_TEXT",
    "Call",
    "begin",
    "cells",
    "close_cell",
    "create_cell",
    "end_session",
    "fail",
    "fail_observation",
    "fail_pending",
    "get",
    "history",
    "pending",
    "record",
    "record_observation",
    "release",
]

DEFAULT_FAIL_TEXT = "observation ended before producing a result"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One operation ready to run: ``run(conn, now_micros)`` inside a transaction.

    ``key`` names what the call is about (for error messages); ``writes`` tells
    whether it needs a write transaction.
    """

    run: Callable[[Connection, int], T]
    writes: bool
    key: dict[str, Any] = field(default_factory=dict)


def _cell_key(session_id: object, cell_id: object) -> tuple[str, str]:
    session = check_identifier(session_id, "session_id")
    cell = check_identifier(cell_id, "cell_id", session_id=session)
    return session, cell


def _generation_key(session_id: object, cell_id: object, generation: object) -> tuple[str, str, int]:
    session, cell = _cell_key(session_id, cell_id)
    return session, cell, check_generation(generation, session_id=session, cell_id=cell)


def _keyed(session: str, cell: str | None = None, generation: int | None = None) -> dict[str, Any]:
    return {"session_id": session, "cell_id": cell, "generation": generation}


def _payload(data: bytes, max_payload_bytes: int, key: dict[str, Any]) -> ops.PreparedPayload:
    if len(data) > max_payload_bytes:
        raise InvalidInput(
            f"payload of {len(data)} bytes exceeds max_payload_bytes={max_payload_bytes}", **key
        )
    return ops.PreparedPayload(data)


def _failure_payload(error_text: object, max_payload_bytes: int, key: dict[str, Any]) -> ops.PreparedPayload:
    if not isinstance(error_text, str):
        raise InvalidInput(f"error_text must be a string, not {type(error_text).__name__}", **key)
    if not is_encodable(error_text):
        raise InvalidInput("error_text is not valid Unicode text (lone surrogate)", **key)
    return _payload(error_text.encode("utf-8"), max_payload_bytes, key)


def _as_outcome(outcome: object, key: dict[str, Any]) -> Outcome:
    if isinstance(outcome, Outcome):
        return outcome
    if isinstance(outcome, Mapping):
        try:
            value = Outcome.from_wire(outcome)
        except StoreError as exc:
            raise InvalidInput(exc.detail, **key) from exc
        wire_cell = outcome["cell_id"]  # checked by from_wire
        if wire_cell != key["cell_id"]:
            raise InvalidInput(f"the outcome is for cell {wire_cell!r}", **key)
        return value
    raise InvalidInput(f"outcome must be an Outcome or a wire object, not {type(outcome).__name__}", **key)


# -- per-session operations ---------------------------------------------------------


def create_cell(session_id: str, cell_id: str) -> Call[None]:
    """Prepare ``create_cell``."""
    session, cell = _cell_key(session_id, cell_id)
    return Call(lambda conn, now: ops.create_cell(conn, now, session, cell), True, _keyed(session, cell))


def begin(
    session_id: str, cell_id: str, generation: int, request: Mapping[str, Any] | None
) -> Call[Observation | None]:
    """Prepare ``begin``."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    request_json = canonical_request(request, session_id=session, cell_id=cell, generation=g)
    return Call(
        lambda conn, now: ops.begin(conn, now, session, cell, g, request_json),
        True,
        _keyed(session, cell, g),
    )


def record(
    session_id: str, cell_id: str, generation: int, outcome: object, max_payload_bytes: int
) -> Call[None]:
    """Prepare ``record``: the outcome is encoded and hashed here, outside the transaction."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    key = _keyed(session, cell, g)
    value = _as_outcome(outcome, key)
    payload = _payload(encode_payload(value), max_payload_bytes, key)
    return Call(lambda conn, now: ops.record(conn, now, session, cell, g, value, payload), True, key)


def fail(
    session_id: str, cell_id: str, generation: int, error_text: str, max_payload_bytes: int
) -> Call[None]:
    """Prepare ``fail``."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    key = _keyed(session, cell, g)
    payload = _failure_payload(error_text, max_payload_bytes, key)
    return Call(lambda conn, now: ops.fail(conn, now, session, cell, g, payload), True, key)


def release(session_id: str, cell_id: str, generation: int) -> Call[bool]:
    """Prepare ``release``."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    return Call(lambda conn, now: ops.release(conn, now, session, cell, g), True, _keyed(session, cell, g))


def close_cell(session_id: str, cell_id: str) -> Call[None]:
    """Prepare ``close_cell``."""
    session, cell = _cell_key(session_id, cell_id)
    return Call(lambda conn, now: ops.close_cell(conn, session, cell), True, _keyed(session, cell))


def get(session_id: str, cell_id: str, generation: int) -> Call[Observation | None]:
    """Prepare ``get``."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    return Call(lambda conn, now: ops.get(conn, session, cell, g), False, _keyed(session, cell, g))


def history(session_id: str, cell_id: str) -> Call[list[Observation]]:
    """Prepare ``history``."""
    session, cell = _cell_key(session_id, cell_id)
    return Call(lambda conn, now: ops.history(conn, session, cell), False, _keyed(session, cell))


def cells(session_id: str | None) -> Call[list[CellSummary]]:
    """Prepare ``cells`` of one session, or of every session when ``session_id`` is None."""
    session = None if session_id is None else check_identifier(session_id, "session_id")
    return Call(lambda conn, now: ops.cells(conn, session), False, {"session_id": session})


# -- store-wide operations -------------------------------------------------------------


def pending() -> Call[list[Observation]]:
    """Prepare ``pending``."""
    return Call(lambda conn, now: ops.pending(conn), False)


def fail_pending(error_text: str, max_payload_bytes: int) -> Call[int]:
    """Prepare ``fail_pending``."""
    payload = _failure_payload(error_text, max_payload_bytes, {})
    return Call(lambda conn, now: ops.fail_pending(conn, now, payload), True)


def end_session(session_id: str) -> Call[int]:
    """Prepare ``end_session``."""
    session = check_identifier(session_id, "session_id")
    return Call(lambda conn, now: ops.end_session(conn, session), True, {"session_id": session})


# -- record and fail for ``observe``: they return what they stored ------------------------


def _stored(
    key: dict[str, Any],
    now: int,
    payload: ops.PreparedPayload,
    outcome: Outcome | None,
    error_text: str | None,
) -> Observation:
    return Observation(
        session_id=key["session_id"],
        cell_id=key["cell_id"],
        generation=key["generation"],
        state="retained" if outcome is not None else "failed",
        kind=None if outcome is None else outcome.kind,
        outcome=outcome,
        error_text=error_text,
        payload_bytes=payload.size,
        payload_sha256=payload.sha256.hex(),
        recorded_at=from_micros(now),
        released_at=None,
    )


def record_observation(
    session_id: str, cell_id: str, generation: int, outcome: object, max_payload_bytes: int
) -> Call[Observation]:
    """Prepare ``record`` returning the observation it stored, built from what it wrote (no read).

    For a generation the caller began: an idempotent retry of a record made
    elsewhere would carry this call's time, not the stored one.
    """
    session, cell, g = _generation_key(session_id, cell_id, generation)
    key = _keyed(session, cell, g)
    value = _as_outcome(outcome, key)
    payload = _payload(encode_payload(value), max_payload_bytes, key)

    def run(conn: Connection, now: int) -> Observation:
        ops.record(conn, now, session, cell, g, value, payload)
        return _stored(key, now, payload, value, None)

    return Call(run, True, key)


def fail_observation(
    session_id: str, cell_id: str, generation: int, error_text: str, max_payload_bytes: int
) -> Call[Observation]:
    """Prepare ``fail`` returning the failed observation it stored (no read)."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    key = _keyed(session, cell, g)
    payload = _failure_payload(error_text, max_payload_bytes, key)

    def run(conn: Connection, now: int) -> Observation:
        ops.fail(conn, now, session, cell, g, payload)
        return _stored(key, now, payload, None, error_text)

    return Call(run, True, key)
