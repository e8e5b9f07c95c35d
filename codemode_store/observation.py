"""The values the store hands out: one observation, and a summary of one cell."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

from .wire import Outcome, OutcomeKind

__all__ = ["CellSummary", "Observation", "ObservationState", "from_micros", "to_micros"]

ObservationState: TypeAlias = Literal["pending", "failed", "retained", "released"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One (session, cell, generation) row as the store holds it.

    ``kind`` is ``None`` while pending or failed (and on a failure's tombstone);
    ``outcome`` is set only while retained; ``error_text`` only while failed.
    ``payload_bytes`` and ``payload_sha256`` describe the stored payload and stay
    on the tombstone. Times are timezone-aware UTC. ``host_id`` is the host
    that began the generation (``None``: a store opened without a host id).
    """

    session_id: str
    cell_id: str
    generation: int
    state: ObservationState
    kind: OutcomeKind | None
    outcome: Outcome | None
    error_text: str | None
    payload_bytes: int | None
    payload_sha256: str | None
    recorded_at: datetime | None
    released_at: datetime | None
    host_id: str | None = None


@dataclass(frozen=True, slots=True)
class CellSummary:
    """What the store knows of one cell of a session.

    ``last_generation`` and ``last_state``/``last_kind`` are ``None`` before the
    first ``begin``; ``retained_bytes`` counts payloads not yet released.
    """

    session_id: str
    cell_id: str
    closed: bool
    last_generation: int | None
    last_state: ObservationState | None
    last_kind: OutcomeKind | None
    observations: int
    retained_bytes: int
    created_at: datetime
    last_activity: datetime


def to_micros(moment: datetime) -> int:
    """Return ``moment`` as integer microseconds since the Unix epoch (UTC)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int | None) -> datetime | None:
    """Return the UTC datetime of stored microseconds, or ``None``."""
    if micros is None:
        return None
    return _EPOCH + timedelta(microseconds=micros)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
