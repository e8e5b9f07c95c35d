"""Prepared calls: an operation with its arguments checked, ready to run.

Each function here validates its arguments (``InvalidInput`` before anything
touches the database), prepares what can be prepared outside a transaction
(payload bytes, sha256, canonical request JSON), and returns an :class:`Op`:
the operation and a tuple of its arguments, no closure. A front end
(``ObservationStore``, or the asyncio one through ``run_sync``) runs it with
:func:`run_call`, in one transaction; so the rules live once, in
``operations.py``, and the transaction control once, here, whatever runs them.
Maintenance code prepares a :class:`Call` (a function of a SQLAlchemy
connection) and runs it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection

from . import hosts
from . import operations as ops
from .driver import Driver
from .engine import BEGIN_READ, BEGIN_WRITE
from .errors import ErrorKey, InvalidInput, StoreError
from .observation import CellSummary, Observation, from_micros
from .payload import PreparedPayload
from .validation import (
    MAX_GENERATION,
    MAX_IDENTIFIER_LENGTH,
    canonical_request,
    check_generation,
    check_identifier,
    check_seconds,
    is_encodable,
)
from .wire import Outcome, encode_payload

__all__ = [
    "DEFAULT_FAIL_TEXT",
    "Call",
    "Op",
    "Owner",
    "begin",
    "cells",
    "claim_host",
    "close_cell",
    "create_cell",
    "end_lease",
    "end_session",
    "fail",
    "fail_observation",
    "fail_pending",
    "get",
    "history",
    "list_hosts",
    "pending",
    "record",
    "record_observation",
    "release",
    "renew_lease",
    "run_call",
]

DEFAULT_FAIL_TEXT = "observation ended before producing a result"

#: The host id and incarnation a store writes as; ``None`` for a store without host id.
Owner = tuple[str, int] | None

#: The shortest and the longest lease ``open`` takes, in seconds.
MIN_LEASE_SECONDS = 0.01
MAX_LEASE_SECONDS = 86_400.0

T = TypeVar("T")

_KEY_NAMES = ("session_id", "cell_id", "generation")


def now_micros() -> int:
    """Return the current time as integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One operation ready to run: ``run(conn, now_micros)`` inside a transaction.

    ``key`` names what the call is about (for error messages); ``writes`` tells
    whether it needs a write transaction.
    """

    run: Callable[[Connection, int], T]
    writes: bool
    key: dict[str, Any] = field(default_factory=dict)


class Op(Generic[T]):
    """One operation of ``operations.py`` with its checked arguments, ready to run.

    ``locked(db, now, *args)`` runs it whole in a transaction; ``at_once`` (or
    ``None``) is its common path as one statement, run in autocommit (on
    PostgreSQL; on SQLite only a read's), returning ``MISS`` when it does not
    apply. The first ``keyed`` arguments are
    the session, cell and generation it is about (for error messages).
    """

    __slots__ = ("args", "at_once", "keyed", "locked", "writes")

    def __init__(
        self,
        locked: Callable[..., T],
        at_once: Callable[..., T | ops.Miss] | None,
        writes: bool,
        keyed: int,
        args: tuple[Any, ...],
    ) -> None:
        self.locked = locked
        self.at_once = at_once
        self.writes = writes
        self.keyed = keyed
        self.args = args

    @property
    def key(self) -> ErrorKey:
        """The session, cell and generation the operation is about, as error keywords."""
        return cast(ErrorKey, dict(zip(_KEY_NAMES, self.args[: self.keyed], strict=False)))


def _plain_identifier(value: object) -> bool:
    """Tell cheaply whether ``value`` is an identifier that needs no closer look.

    A non-empty ASCII ``str`` of at most 256 characters without NUL: what
    hosts use. Anything else goes through ``check_identifier``, which accepts
    or rejects it with its reason.
    """
    if type(value) is not str:
        return False
    return 0 < len(value) <= MAX_IDENTIFIER_LENGTH and value.isascii() and "\x00" not in value


def _cell_key(session_id: object, cell_id: object) -> tuple[str, str]:
    if _plain_identifier(session_id) and _plain_identifier(cell_id):
        return session_id, cell_id  # type: ignore[return-value]
    session = check_identifier(session_id, "session_id")
    cell = check_identifier(cell_id, "cell_id", session_id=session)
    return session, cell


def _generation_key(session_id: object, cell_id: object, generation: object) -> tuple[str, str, int]:
    session, cell = _cell_key(session_id, cell_id)
    if type(generation) is int and 0 <= generation <= MAX_GENERATION:
        return session, cell, generation
    return session, cell, check_generation(generation, session_id=session, cell_id=cell)


def _payload(
    data: bytes, max_payload_bytes: int, session: str | None, cell: str | None, generation: int | None
) -> PreparedPayload:
    if len(data) > max_payload_bytes:
        raise InvalidInput(
            f"payload of {len(data)} bytes exceeds max_payload_bytes={max_payload_bytes}",
            session_id=session,
            cell_id=cell,
            generation=generation,
        )
    return PreparedPayload(data)


def _failure_payload(
    error_text: object, max_payload_bytes: int, session: str | None, cell: str | None, generation: int | None
) -> PreparedPayload:
    key: dict[str, Any] = {"session_id": session, "cell_id": cell, "generation": generation}
    if not isinstance(error_text, str):
        raise InvalidInput(f"error_text must be a string, not {type(error_text).__name__}", **key)
    if not is_encodable(error_text):
        raise InvalidInput("error_text is not valid Unicode text (lone surrogate)", **key)
    return _payload(error_text.encode("utf-8"), max_payload_bytes, session, cell, generation)


def _as_outcome(outcome: object, session: str, cell: str, generation: int) -> Outcome:
    key: dict[str, Any] = {"session_id": session, "cell_id": cell, "generation": generation}
    if isinstance(outcome, Outcome):
        return outcome
    if isinstance(outcome, Mapping):
        try:
            value = Outcome.from_wire(outcome)
        except StoreError as exc:
            raise InvalidInput(exc.detail, **key) from exc
        wire_cell = outcome["cell_id"]  # checked by from_wire
        if wire_cell != cell:
            raise InvalidInput(f"the outcome is for cell {wire_cell!r}", **key)
        return value
    raise InvalidInput(f"outcome must be an Outcome or a wire object, not {type(outcome).__name__}", **key)


# -- per-session operations ---------------------------------------------------------


def create_cell(session_id: str, cell_id: str) -> Op[None]:
    """Prepare ``create_cell``."""
    session, cell = _cell_key(session_id, cell_id)
    return Op(ops.create_cell, ops.create_cell, True, 2, (session, cell))


def _host(owner: Owner) -> tuple[str | None, int | None]:
    return (None, None) if owner is None else owner


def begin(
    session_id: str,
    cell_id: str,
    generation: int,
    request: Mapping[str, Any] | None,
    owner: Owner = None,
) -> Op[Observation | None]:
    """Prepare ``begin`` (by the host ``owner``, fenced; ``None``: a store without host id)."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    request_json = (
        None
        if request is None
        else canonical_request(request, session_id=session, cell_id=cell, generation=g)
    )
    return Op(ops.begin, ops.begin_at_once, True, 3, (session, cell, g, request_json, *_host(owner)))


def record(
    session_id: str,
    cell_id: str,
    generation: int,
    outcome: object,
    max_payload_bytes: int,
    owner: Owner = None,
) -> Op[None]:
    """Prepare ``record``: the outcome is encoded and hashed here, outside the transaction."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    value = outcome if type(outcome) is Outcome else _as_outcome(outcome, session, cell, g)
    payload = _payload(encode_payload(value), max_payload_bytes, session, cell, g)
    return Op(ops.record, ops.record_at_once, True, 3, (session, cell, g, value.kind, payload, *_host(owner)))


def fail(
    session_id: str,
    cell_id: str,
    generation: int,
    error_text: str,
    max_payload_bytes: int,
    owner: Owner = None,
) -> Op[None]:
    """Prepare ``fail``."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    payload = _failure_payload(error_text, max_payload_bytes, session, cell, g)
    return Op(ops.fail, ops.fail_at_once, True, 3, (session, cell, g, payload, *_host(owner)))


def release(session_id: str, cell_id: str, generation: int) -> Op[bool]:
    """Prepare ``release``."""
    return Op(ops.release, ops.release_at_once, True, 3, _generation_key(session_id, cell_id, generation))


def close_cell(session_id: str, cell_id: str) -> Op[None]:
    """Prepare ``close_cell``."""
    return Op(ops.close_cell, ops.close_cell, True, 2, _cell_key(session_id, cell_id))


def get(session_id: str, cell_id: str, generation: int) -> Op[Observation | None]:
    """Prepare ``get``."""
    return Op(ops.get, ops.get, False, 3, _generation_key(session_id, cell_id, generation))


def history(session_id: str, cell_id: str) -> Op[list[Observation]]:
    """Prepare ``history``."""
    return Op(ops.history, None, False, 2, _cell_key(session_id, cell_id))


def cells(session_id: str | None) -> Op[list[CellSummary]]:
    """Prepare ``cells`` of one session, or of every session when ``session_id`` is None."""
    session = None if session_id is None else check_identifier(session_id, "session_id")
    return Op(ops.cells, ops.cells, False, 1, (session,))


# -- store-wide operations -------------------------------------------------------------


def pending() -> Op[list[Observation]]:
    """Prepare ``pending``."""
    return Op(ops.pending, ops.pending, False, 0, ())


def fail_pending(error_text: str, max_payload_bytes: int, owner: Owner = None) -> Op[hosts.Recovered]:
    """Prepare ``fail_pending`` for the host ``owner`` (``None``: a store without host id)."""
    payload = _failure_payload(error_text, max_payload_bytes, None, None, None)
    return Op(ops.fail_pending, None, True, 0, (payload, *_host(owner)))


def check_lease_seconds(lease_seconds: object) -> float:
    """Return ``lease_seconds`` as a float, or raise ``InvalidInput``."""
    return check_seconds(lease_seconds, "lease_seconds", MIN_LEASE_SECONDS, MAX_LEASE_SECONDS)


def claim_host(host_id: str, lease_seconds: float) -> Op[tuple[int, int]]:
    """Prepare the claim of ``host_id`` by an opening store: (incarnation, generations recovered)."""
    host = check_identifier(host_id, "host_id")
    lease_micros = round(check_lease_seconds(lease_seconds) * 1_000_000)
    return Op(hosts.claim, None, True, 0, (host, lease_micros))


def renew_lease(owner: tuple[str, int]) -> Op[bool]:
    """Prepare a lease renewal: ``False`` when the incarnation was superseded."""
    return Op(hosts.renew, hosts.renew, True, 0, owner)


def end_lease(owner: tuple[str, int]) -> Op[bool]:
    """Prepare the end of a closing store's lease."""
    return Op(hosts.end_lease, hosts.end_lease, True, 0, owner)


def list_hosts() -> Op[list[hosts.HostInfo]]:
    """Prepare ``hosts``: every host id the store has seen."""
    return Op(hosts.host_infos, hosts.host_infos, False, 0, ())


def end_session(session_id: str) -> Op[int]:
    """Prepare ``end_session``."""
    return Op(ops.end_session, None, True, 1, (check_identifier(session_id, "session_id"),))


# -- record and fail for ``observe``: they return what they stored ------------------------


def _stored(
    session: str,
    cell: str,
    generation: int,
    now: int,
    payload: PreparedPayload,
    outcome: Outcome | None,
    error_text: str | None,
    host_id: str | None,
) -> Observation:
    return Observation(
        session_id=session,
        cell_id=cell,
        generation=generation,
        state="retained" if outcome is not None else "failed",
        kind=None if outcome is None else outcome.kind,
        outcome=outcome,
        error_text=error_text,
        payload_bytes=payload.size,
        payload_sha256=payload.sha256.hex(),
        recorded_at=from_micros(now),
        released_at=None,
        host_id=host_id,
    )


def _record_stored(
    db: Driver,
    now: int,
    session: str,
    cell: str,
    g: int,
    payload: PreparedPayload,
    value: Outcome,
    host_id: str | None,
    incarnation: int | None,
) -> Observation:
    ops.record(db, now, session, cell, g, value.kind, payload, host_id, incarnation)
    return _stored(session, cell, g, now, payload, value, None, host_id)


def _record_stored_at_once(
    db: Driver,
    now: int,
    session: str,
    cell: str,
    g: int,
    payload: PreparedPayload,
    value: Outcome,
    host_id: str | None,
    incarnation: int | None,
) -> Observation | ops.Miss:
    done = ops.record_at_once(db, now, session, cell, g, value.kind, payload, host_id, incarnation)
    if isinstance(done, ops.Miss):
        return ops.MISS
    return _stored(session, cell, g, now, payload, value, None, host_id)


def record_observation(
    session_id: str,
    cell_id: str,
    generation: int,
    outcome: object,
    max_payload_bytes: int,
    owner: Owner = None,
) -> Op[Observation]:
    """Prepare ``record`` returning the observation it stored, built from what it wrote (no read).

    For a generation the caller began: an idempotent retry of a record made
    elsewhere would carry this call's time, not the stored one.
    """
    session, cell, g = _generation_key(session_id, cell_id, generation)
    value = outcome if type(outcome) is Outcome else _as_outcome(outcome, session, cell, g)
    payload = _payload(encode_payload(value), max_payload_bytes, session, cell, g)
    args = (session, cell, g, payload, value, *_host(owner))
    return Op(_record_stored, _record_stored_at_once, True, 3, args)


def _fail_stored(
    db: Driver,
    now: int,
    session: str,
    cell: str,
    g: int,
    payload: PreparedPayload,
    error_text: str,
    host_id: str | None,
    incarnation: int | None,
) -> Observation:
    ops.fail(db, now, session, cell, g, payload, host_id, incarnation)
    return _stored(session, cell, g, now, payload, None, error_text, host_id)


def _fail_stored_at_once(
    db: Driver,
    now: int,
    session: str,
    cell: str,
    g: int,
    payload: PreparedPayload,
    error_text: str,
    host_id: str | None,
    incarnation: int | None,
) -> Observation | ops.Miss:
    if isinstance(ops.fail_at_once(db, now, session, cell, g, payload, host_id, incarnation), ops.Miss):
        return ops.MISS
    return _stored(session, cell, g, now, payload, None, error_text, host_id)


def fail_observation(
    session_id: str,
    cell_id: str,
    generation: int,
    error_text: str,
    max_payload_bytes: int,
    owner: Owner = None,
) -> Op[Observation]:
    """Prepare ``fail`` returning the failed observation it stored (no read)."""
    session, cell, g = _generation_key(session_id, cell_id, generation)
    payload = _failure_payload(error_text, max_payload_bytes, session, cell, g)
    args = (session, cell, g, payload, error_text, *_host(owner))
    return Op(_fail_stored, _fail_stored_at_once, True, 3, args)


# -- running a prepared call -------------------------------------------------------------


def run_call(conn: Connection, call: Call[T] | Op[T], kept: Driver | None = None) -> T:
    """Run a prepared call on ``conn`` in one transaction: the one path of both front ends.

    An :class:`Op` runs on the DB-API connection (see ``driver.py``): SQLite
    opens ``BEGIN IMMEDIATE`` (``BEGIN`` for a read) and commits; PostgreSQL
    first tries the operation's common path as one statement in autocommit,
    and only when that refuses runs the operation in a transaction, its rows
    locked. A read of one statement runs alone on SQLite too, its own
    transaction in autocommit. A :class:`Call` runs through SQLAlchemy in ``conn.begin()``.
    ``kept`` is a driver kept with ``conn`` between calls; without one, the
    call makes its own and closes it.
    """
    if not isinstance(call, Op):
        with conn.begin():
            return call.run(conn, now_micros())
    db = Driver(conn) if kept is None else kept.renew()
    try:
        if db.one_statement:
            if call.at_once is not None:
                db.set_autocommit(True)
                try:
                    quick = call.at_once(db, now_micros(), *call.args)
                finally:
                    db.set_autocommit(False)
                if not isinstance(quick, ops.Miss):
                    return quick
            # psycopg opens the transaction with the first statement.
        else:
            if not call.writes and call.at_once is not None:
                # A read of one statement is a transaction of its own in SQLite's
                # autocommit: one snapshot, and no BEGIN or COMMIT to pay for.
                # (Writes always take the lock first, with BEGIN IMMEDIATE.)
                quick = call.at_once(db, now_micros(), *call.args)
                if not isinstance(quick, ops.Miss):
                    return quick
            db.execute(BEGIN_WRITE if call.writes else BEGIN_READ)
        try:
            # The clock is read inside the transaction: under the write lock,
            # so recorded times follow the commit order.
            result: T = call.locked(db, now_micros(), *call.args)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return result
    finally:
        if kept is None:
            db.close()
