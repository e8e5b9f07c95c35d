"""The operations of SPEC §3, one function each, rules in the spec's order.

Each function runs inside a transaction its caller opened (see ``store.py``)
and raises a :mod:`~codemode_store.errors` subclass to reject; the caller rolls
back, so a rejection leaves the database as it was. Arguments arrive already
validated. Common cases take one guarded statement whose row count decides;
the rarer cases read to find out which rule applies.

On PostgreSQL the common case of a writing operation runs first on its own, as
one statement in autocommit (the ``*_at_once`` functions: one network round
trip); when its guard refuses, it changed nothing and returns ``MISS``, and the
operation runs again in a locked transaction to find out which rule applies.

``begin``, ``record``, ``fail`` and ``fail_pending`` take the host id and
incarnation of the store last (both ``None`` for a store opened without a host
id): the fencing and ownership are guards of their statements, and the
reason of a refusal is found on the locked path like any other (``HostFenced``
first, before the rules of §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from . import hosts
from . import statements as sql
from .damage import (
    checked_cell,
    checked_int,
    checked_ints,
    checked_payload,
    checked_text,
    damaged,
    storage_class,
)
from .driver import Driver
from .errors import (
    AlreadyReleased,
    CellClosed,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    HostFenced,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    UnknownCell,
)
from .observation import CellSummary, Observation, ObservationState, from_micros
from .payload import PreparedPayload
from .wire import CLOSING_KINDS, OutcomeKind, decode_payload

__all__ = [
    "MISS",
    "Miss",
    "begin",
    "begin_at_once",
    "cells",
    "close_cell",
    "create_cell",
    "end_session",
    "fail",
    "fail_at_once",
    "fail_pending",
    "get",
    "history",
    "pending",
    "record",
    "record_at_once",
    "release",
    "release_at_once",
    "to_cell_summary",
    "to_observation",
]


class Miss:
    """What a one-statement common path returns when its guard refused: take the locked path."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS = Miss()


def _unknown(session_id: str, cell_id: str, generation: int | None = None) -> UnknownCell:
    return UnknownCell(
        "the session does not know this cell",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


def _lock_cell(db: Driver, session_id: str, cell_id: str, generation: int | None) -> tuple[bool, int | None]:
    row = db.first(sql.select_cell_locked, (session_id, cell_id))
    if row is None:
        raise _unknown(session_id, cell_id, generation)
    return checked_cell(row, session_id, cell_id, generation)


_STATES = frozenset(("pending", "failed", "retained", "released"))
_KINDS = frozenset(("yielded", "completed", "terminated", "missing"))


def _checked_row(row: list[Any]) -> None:
    """Check the metadata of an observation row (``to_observation``'s, payload taken out) is of its types."""
    (session_id, cell_id, generation, state, kind, size, sha, recorded, released, host_id) = row
    key = (session_id, cell_id, generation)
    checked_text(host_id, "host_id", *key)
    if type(session_id) is not str or type(cell_id) is not str:
        raise damaged("the row's session or cell id is not stored as TEXT", *key)
    checked_int(generation, "generation", *key)
    if generation is None or state not in _STATES or (kind is not None and kind not in _KINDS):
        raise damaged(
            f"the row's generation, state or kind is not one the store writes ({state!r}, {kind!r})", *key
        )
    checked_int(size, "payload_bytes", *key)
    if sha is not None and type(sha) is not bytes:
        raise damaged(f"payload_sha256 is stored as {storage_class(sha)}, not as BLOB", *key)
    checked_int(recorded, "recorded_at", *key)
    checked_int(released, "released_at", *key)


def to_observation(row: list[Any], *, with_outcome: bool = True) -> Observation:
    """Return the Observation of a row selected with ``OBSERVATION_COLUMNS``, as a list.

    Every value is checked to be of its type, and a payload handed out to be
    the bytes whose length and sha256 were recorded (``damage.py``): a row
    altered behind the store's back raises ``DatabaseError``. The payload is
    taken out of the list, so that once decoded to text its bytes are freed
    before the JSON is parsed: a large payload is held at most twice at any
    moment. ``with_outcome=False`` leaves a retained row's outcome out (a
    listing selects only failure texts, never outcomes).
    """
    stored = row.pop()
    _checked_row(row)
    (session_id, cell_id, generation, state, kind, size, sha, recorded, released, host_id) = row
    key = (session_id, cell_id, generation)
    holds = state in ("retained", "failed")
    if (stored is None) == (holds and (with_outcome or state == "failed")):
        what = "holds no payload" if stored is None else "holds a payload"
        raise damaged(f"the {state} row {what}", *key)
    outcome = None
    error_text = None
    if stored is not None:
        data = checked_payload(stored, size, sha, *key)
        del stored
        try:
            text = data.decode("utf-8")
            del data
            if state == "retained":
                outcome = decode_payload(text)
            else:
                error_text = text
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            # The bytes are the recorded ones, yet do not decode: the row was
            # forged with a matching hash, or written by a broken version.
            raise damaged(f"the stored payload does not decode ({type(exc).__name__})", *key) from exc
    return Observation(
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
        state=cast(ObservationState, state),
        kind=cast("OutcomeKind | None", kind),
        outcome=outcome,
        error_text=error_text,
        payload_bytes=size,
        payload_sha256=None if sha is None else sha.hex(),
        recorded_at=from_micros(recorded),
        released_at=from_micros(released),
        host_id=host_id,
    )


# -- create_cell ----------------------------------------------------------------


def create_cell(db: Driver, now: int, session_id: str, cell_id: str) -> None:
    """Register an open cell; a second create of it is ``DuplicateCell``."""
    if db.count(sql.insert_cell, (session_id, cell_id, now)) == 0:
        raise DuplicateCell("the session already has this cell", session_id=session_id, cell_id=cell_id)


# -- begin ----------------------------------------------------------------------


def begin(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    request: str | None,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> Observation | None:
    """Start generation ``generation`` or replay it (SPEC §3 ``begin``; fenced as several-hosts.md says)."""
    key = (session_id, cell_id, generation)
    # The common case: the next generation of an open cell (of a host whose
    # incarnation is current). The guarded UPDATE both checks that and takes
    # the cell's row lock.
    if host_id is None:
        advanced = db.count(sql.update_cell_generation, (*key, generation - 1))
    else:
        advanced = db.count(sql.update_cell_generation_fenced, (*key, generation - 1, host_id, incarnation))
    if advanced == 1:
        if generation > 0:
            _acknowledge_previous(db, now, session_id, cell_id, generation)
        db.count(sql.insert_pending, (*key, now, request, host_id, incarnation))
        return None

    if host_id is not None:
        _check_fence(db, host_id, incarnation, session_id, cell_id, generation)
    _closed, last = _lock_cell(db, session_id, cell_id, generation)
    next_generation = 0 if last is None else last + 1
    if generation > next_generation:
        raise FutureGeneration(
            f"the cell's next generation is {next_generation}",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    if generation == next_generation:
        # update_cell_generation refused the next generation: only a closed cell does that.
        raise CellClosed(
            "the cell is closed; no later generation will come",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    found = db.first(sql.select_observation, key)
    if found is None:
        raise damaged(f"the cell is at generation {last}, yet generation {generation} has no row", *key)
    row = list(found)
    stored_request = checked_text(row.pop(), "request", *key)
    state = row[3]
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
    if request is not None and stored_request is not None and request != stored_request:
        raise GenerationConflict(
            f"the request {request} differs from the stored {stored_request}",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    return to_observation(row)


def begin_at_once(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    request: str | None,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> Miss | None:
    """Run the common case of ``begin`` as one statement; ``MISS`` if it does not apply."""
    if host_id is None:
        statement = (
            sql.release_previous_and_insert_pending_at_once
            if generation > 0
            else sql.insert_first_pending_at_once
        )
    else:
        statement = (
            sql.release_previous_and_insert_pending_at_once_fenced
            if generation > 0
            else sql.insert_first_pending_at_once_fenced
        )
    args = (session_id, cell_id, generation, generation - 1, now, request, host_id, incarnation)
    return None if db.first(statement, args)[0] == 1 else MISS


def _check_fence(
    db: Driver, host_id: str, incarnation: int | None, session_id: str, cell_id: str, generation: int
) -> None:
    """Raise ``HostFenced`` unless ``incarnation`` is still the host id's current one."""
    row = db.first(sql.select_host_incarnation, (host_id,))
    current = None if row is None else int(row[0])
    if current != incarnation:
        raise HostFenced(
            f"host {host_id!r} incarnation {incarnation} was superseded"
            + ("" if current is None else f" by incarnation {current}")
            + ": this process must stop (two processes with one host id)",
            host_id=host_id,
            incarnation=incarnation,
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )


def _in_progress_elsewhere(
    row_host: str | None, row_incarnation: int | None, session_id: str, cell_id: str, generation: int
) -> ObservationInProgress:
    where = (
        "by a store without host id"
        if row_host is None
        else f"under host {row_host!r} (incarnation {row_incarnation})"
    )
    return ObservationInProgress(
        f"the generation is pending {where}; only that host records or fails it",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
        host_id=row_host,
    )


def _owned_by(
    row_host: str | None, row_incarnation: int | None, host_id: str | None, incarnation: int | None
) -> bool:
    if host_id is None:
        return row_host is None
    return row_host == host_id and row_incarnation == incarnation


def _acknowledge_previous(db: Driver, now: int, session_id: str, cell_id: str, generation: int) -> None:
    """Release generation g−1 for begin(g): asking for g proves Core consumed g−1."""
    previous = (session_id, cell_id, generation - 1)
    if db.count(sql.update_released, (*previous, now)) == 1:
        return
    row = db.first(sql.select_state, previous)
    if row is not None and row[0] == "pending":
        raise ObservationInProgress(
            f"generation {generation - 1} is still pending",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )


# -- record and fail ------------------------------------------------------------


def record(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    kind: str,
    payload: PreparedPayload,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> None:
    """Store the outcome of kind ``kind`` of pending ``generation`` (SPEC §3 ``record``; its own only)."""
    key = (session_id, cell_id, generation)
    # Close first: it takes the cell's lock before the observation's, the order
    # every writer uses. A rejection below rolls the close back.
    if kind in CLOSING_KINDS and db.count(sql.update_cell_closed, (session_id, cell_id)) == 0:
        raise _unknown(session_id, cell_id, generation)
    args = (*key, kind, payload.data, payload.size, payload.sha256, now)
    if host_id is None:
        stored = db.count(sql.update_retained, args)
    else:
        stored = db.count(sql.update_retained_owned, (*args, host_id, incarnation))
    if stored == 1:
        return
    _lock_cell(db, session_id, cell_id, generation)
    row = db.first(sql.select_state_and_digest, key)
    if row is not None and row[0] == "pending" and not _owned_by(row[3], row[4], host_id, incarnation):
        raise _in_progress_elsewhere(row[3], row[4], session_id, cell_id, generation)
    if row is not None and row[0] == "retained":
        if type(row[2]) is not bytes:
            raise damaged(f"payload_sha256 is stored as {storage_class(row[2])}, not as BLOB", *key)
        if row[2] == payload.sha256 and row[1] == kind:
            return  # the same outcome again: an idempotent retry
        raise GenerationConflict(
            "the generation already holds a different outcome",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    raise _not_pending(row, session_id, cell_id, generation)


def record_at_once(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    kind: str,
    payload: PreparedPayload,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> Miss | None:
    """Run the common case of ``record`` as one statement; ``MISS`` if it does not apply."""
    args = (session_id, cell_id, generation, kind, payload.data, payload.size, payload.sha256, now)
    if host_id is None:
        if kind in CLOSING_KINDS:
            done = db.first(sql.update_retained_and_cell_closed_at_once, args)[0] == 1
        else:
            done = db.count(sql.update_retained, args) == 1
    else:
        owned = (*args, host_id, incarnation)
        if kind in CLOSING_KINDS:
            done = db.first(sql.update_retained_and_cell_closed_at_once_owned, owned)[0] == 1
        else:
            done = db.count(sql.update_retained_owned, owned) == 1
    return None if done else MISS


def fail(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    payload: PreparedPayload,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> None:
    """Mark pending ``generation`` failed with an error text (SPEC §3 ``fail``; its own only)."""
    key = (session_id, cell_id, generation)
    if fail_at_once(db, now, session_id, cell_id, generation, payload, host_id, incarnation) is None:
        return
    _lock_cell(db, session_id, cell_id, generation)
    row = db.first(sql.select_state_and_host, key)
    if row is not None and row[0] == "pending" and not _owned_by(row[1], row[2], host_id, incarnation):
        raise _in_progress_elsewhere(row[1], row[2], session_id, cell_id, generation)
    raise _not_pending(row, session_id, cell_id, generation)


def fail_at_once(
    db: Driver,
    now: int,
    session_id: str,
    cell_id: str,
    generation: int,
    payload: PreparedPayload,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> Miss | None:
    """Run the common case of ``fail`` as one statement; ``MISS`` if it does not apply."""
    args = (session_id, cell_id, generation, payload.data, payload.size, payload.sha256, now)
    if host_id is None:
        done = db.count(sql.update_failed, args)
    else:
        done = db.count(sql.update_failed_owned, (*args, host_id, incarnation))
    return None if done == 1 else MISS


def _not_pending(row: Any, session_id: str, cell_id: str, generation: int) -> NotPending:
    what = "does not exist" if row is None else f"is {row[0]}"
    return NotPending(
        f"the generation {what}, not pending",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


def fail_pending(
    db: Driver,
    now: int,
    payload: PreparedPayload,
    host_id: str | None = None,
    incarnation: int | None = None,
) -> hosts.Recovered:
    """Fail the pending rows no live host is running (the sets of docs/several-hosts.md); say whose.

    With a host id: the rows of its earlier incarnations (``RESTARTED_TEXT``);
    without: the rows begun without a host id (``payload``). Either way, the
    rows of every lost host (``hosts.lost_text``), a host that renews its
    lease meanwhile excepted.
    """
    if host_id is None:
        own = db.count(
            hosts.update_anonymous_pending_failed, (payload.data, payload.size, payload.sha256, now)
        )
    else:
        restarted = hosts.RESTARTED_PAYLOAD
        own = db.count(
            hosts.update_earlier_incarnations_failed,
            (host_id, incarnation, restarted.data, restarted.size, restarted.sha256, now),
        )
    return hosts.Recovered(own, hosts.fail_lost(db, now, host_id))


# -- release ----------------------------------------------------------------------


#: What a refused release of a pending or failed generation tells its caller to do instead.
_NOT_RELEASABLE_ADVICE = {
    "pending": "the host records (or fails) it first; Core acknowledges it by asking for the next generation",
    "failed": "Core acknowledges a failure by asking for the next generation",
}


def release(db: Driver, now: int, session_id: str, cell_id: str, generation: int) -> bool:
    """Acknowledge ``generation`` (SPEC §3 ``release``); ``True`` if this call dropped it."""
    key = (session_id, cell_id, generation)
    if db.count(sql.update_released_terminal, (*key, now)) == 1:
        return True
    closed, last = _lock_cell(db, session_id, cell_id, generation)
    if last is None or generation > last:
        raise FutureGeneration(
            "the cell has no such generation yet",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    state, kind = db.first(sql.select_state, key)
    if state == "released":
        return False
    if state in ("pending", "failed"):
        advice = _NOT_RELEASABLE_ADVICE[state]
        raise NotReleasable(
            f"the generation is {state}; {advice}",
            session_id=session_id,
            cell_id=cell_id,
            generation=generation,
        )
    if kind == "yielded" and closed and generation == last:
        # A closed cell's trailing yield: no successor will ever acknowledge it.
        return db.count(sql.update_released, (*key, now)) == 1
    raise NotReleasable(
        f"a {kind} outcome is not terminal; Core acknowledges it by asking for the next generation",
        session_id=session_id,
        cell_id=cell_id,
        generation=generation,
    )


def release_at_once(db: Driver, now: int, session_id: str, cell_id: str, generation: int) -> bool | Miss:
    """Run the common case of ``release`` as one statement; ``MISS`` if it does not apply."""
    return (
        True if db.count(sql.update_released_terminal, (session_id, cell_id, generation, now)) == 1 else MISS
    )


# -- close_cell, end_session -----------------------------------------------------


def close_cell(db: Driver, now: int, session_id: str, cell_id: str) -> None:
    """Mark the cell closed; closing a closed cell changes nothing."""
    if db.count(sql.update_cell_closed, (session_id, cell_id)) == 0:
        raise _unknown(session_id, cell_id)


def end_session(db: Driver, now: int, session_id: str) -> int:
    """Delete every row of the session; return how many observations went."""
    db.all(sql.select_session_cells_locked, (session_id,))
    deleted = db.count(sql.delete_session_observations, (session_id,))
    db.count(sql.delete_session_cells, (session_id,))
    return deleted


# -- reads ---------------------------------------------------------------------------


def get(db: Driver, now: int, session_id: str, cell_id: str, generation: int) -> Observation | None:
    """Return one observation, or ``None`` when the cell has no such generation."""
    row = db.first_list(sql.select_cell_and_observation, (session_id, cell_id, generation))
    if row is None:
        raise _unknown(session_id, cell_id, generation)
    if row[4] is None:  # no observation joined: the cell has no such generation
        return None
    del row[:2]
    return to_observation(row)


def history(db: Driver, now: int, session_id: str, cell_id: str) -> list[Observation]:
    """Return every observation of the cell in generation order."""
    if db.first(sql.select_cell, (session_id, cell_id)) is None:
        raise _unknown(session_id, cell_id)
    return [to_observation(list(row)) for row in db.all(sql.select_history, (session_id, cell_id))]


def pending(db: Driver, now: int) -> list[Observation]:
    """Return every pending observation of the store."""
    return [to_observation(list(row)) for row in db.all(sql.select_pending)]


def cells(db: Driver, now: int, session_id: str | None) -> list[CellSummary]:
    """Return summaries of the cells of one session, or of every session."""
    if session_id is None:
        rows = db.all(sql.select_cell_summaries)
    else:
        rows = db.all(sql.select_cell_summaries_of_session, (session_id,))
    return [to_cell_summary(row) for row in rows]


def to_cell_summary(row: Sequence[Any]) -> CellSummary:
    """Return the CellSummary of a row: cell, last observation, counts, creation and activity times.

    A count of ``None`` (a cell with no observation, summed by a subquery) is 0.
    """
    (session_id, cell_id, closed, last, state, kind, count, retained, created, *times) = row
    key = (session_id, cell_id)
    closed, last = checked_cell((closed, last), session_id, cell_id, None)
    retained, created, *times = checked_ints((retained, created, *times), "a size or time", *key)
    if created is None:
        raise damaged("the cell's created_at is NULL", session_id, cell_id)
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
        observations=int(count or 0),
        retained_bytes=int(retained or 0),
        created_at=created_at,
        last_activity=from_micros(activity) or created_at,
    )
