"""Retention: expire the sessions that hosts abandoned.

A host that crashes never calls ``end_session``; :func:`gc` purges the sessions
with no activity since a cutoff, one transaction per session, optionally
keeping tombstones. :func:`parse_age` reads the ``7d`` style ages of the CLI.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, exists, func, select, update
from sqlalchemy.sql.elements import BindParameter

from . import statements as sql
from .damage import checked_ints
from .errors import InvalidInput
from .jsonable import json_object
from .observation import from_micros, to_micros
from .progress import Progress
from .schema import cells, observations
from .transactions import Transactions

__all__ = ["ExpiredSession", "GcReport", "gc", "parse_age"]

o = observations.c
c = cells.c

_droppable = o.state.in_(("retained", "failed", "pending"))
_session: BindParameter[str] = bindparam("p_session_id")
_cutoff: BindParameter[int] = bindparam("p_cutoff")

_observation_totals = select(
    o.session_id,
    func.count(),
    func.coalesce(func.sum(case((_droppable, 1), else_=0)), 0),
    func.coalesce(func.sum(case((sql.holds_payload, o.payload_bytes), else_=0)), 0),
    func.max(o.begun_at),
    func.max(o.recorded_at),
    func.max(o.released_at),
).group_by(o.session_id)
_cell_totals = select(c.session_id, func.count(), func.max(c.created_at)).group_by(c.session_id)
_observation_totals_of_session = _observation_totals.where(o.session_id == _session)
# Locks the session's cells (PostgreSQL) and reads what the cell totals need in
# the same round trip: an aggregate cannot be taken FOR UPDATE.
_lock_session_cells = select(c.created_at).where(c.session_id == _session).with_for_update()

# The guards below repeat the age test row by row. On SQLite the write lock
# already excludes every writer; on PostgreSQL a row changed by a concurrent
# writer is re-evaluated against them, so a just-touched row is never dropped.
_row_is_old = and_(
    o.begun_at < _cutoff,
    func.coalesce(o.recorded_at, 0) < _cutoff,
    func.coalesce(o.released_at, 0) < _cutoff,
)

_tombstone_session = (
    update(observations)
    .where(o.session_id == _session, _droppable, _row_is_old)
    .values(state="released", payload=None, released_at=bindparam("p_now"))
)
_delete_session_observations = delete(observations).where(o.session_id == _session, _row_is_old)
_delete_session_cells = delete(cells).where(
    c.session_id == _session,
    c.created_at < _cutoff,
    ~exists().where(o.session_id == c.session_id, o.cell_id == c.cell_id),
)


@dataclass(frozen=True, slots=True)
class ExpiredSession:
    """One session ``gc`` purged, or on a dry run would purge.

    ``cells`` and ``observations`` count the rows deleted (with
    ``keep_tombstones``: no cell, and the observations turned into tombstones);
    ``bytes_freed`` counts the payload bytes dropped.
    """

    session_id: str
    last_activity: datetime
    cells: int
    observations: int
    bytes_freed: int

    def to_json(self) -> dict[str, Any]:
        """Return the session's figures as JSON-able values."""
        return json_object(self, ("session_id", "last_activity", "cells", "observations", "bytes_freed"))


_GC_REPORT_KEYS = (
    "cutoff",
    "dry_run",
    "keep_tombstones",
    "sessions",
    "cells",
    "observations",
    "rows",
    "bytes_freed",
    "skipped",
    "expired",
)


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one ``gc`` run did (or, when ``dry_run``, would do).

    Its names are the keys of ``codemode-store gc --json``: ``expired`` lists
    the sessions, ``sessions`` counts them, and the other totals add them up.
    """

    cutoff: datetime
    dry_run: bool
    keep_tombstones: bool
    #: The sessions purged (or, on a dry run, to be purged), by session id.
    expired: tuple[ExpiredSession, ...]
    #: Sessions the scan found idle that were touched before their turn came.
    skipped: tuple[str, ...] = ()

    @property
    def sessions(self) -> int:
        """Return how many sessions went (the length of ``expired``)."""
        return len(self.expired)

    @property
    def cells(self) -> int:
        """Return how many cell rows went."""
        return sum(s.cells for s in self.expired)

    @property
    def observations(self) -> int:
        """Return how many observation rows went (or became tombstones)."""
        return sum(s.observations for s in self.expired)

    @property
    def rows(self) -> int:
        """Return how many rows were deleted or rewritten in all."""
        return self.cells + self.observations

    @property
    def bytes_freed(self) -> int:
        """Return how many payload bytes were dropped."""
        return sum(s.bytes_freed for s in self.expired)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return json_object(self, _GC_REPORT_KEYS)


@dataclass(frozen=True, slots=True)
class _Totals:
    session_id: str
    cells: int
    observations: int
    droppable: int
    payload_bytes: int
    last_activity: int


def _totals(conn: Connection) -> dict[str, _Totals]:
    """Return the row counts and last activity of every session."""
    return _merged(conn.execute(_observation_totals), conn.execute(_cell_totals))


def _locked_totals(conn: Connection, session_id: str) -> _Totals | None:
    """Lock one session's cells and return its totals, read under the lock."""
    params = {"p_session_id": session_id}
    created = conn.execute(_lock_session_cells, params).scalars().all()
    cell_rows = [(session_id, len(created), max(created))] if created else []
    return _merged(conn.execute(_observation_totals_of_session, params), cell_rows).get(session_id)


def _merged(
    observation_rows: Iterable[Sequence[Any]], cell_rows: Iterable[Sequence[Any]]
) -> dict[str, _Totals]:
    """Return the totals of each session from its observation and cell aggregates."""
    per_session: dict[str, list[int]] = {}
    for sid, *values in observation_rows:
        count, droppable, size, *times = checked_ints(values, "a size or time of its rows", sid)
        per_session[sid] = [0, int(count or 0), int(droppable or 0), int(size or 0), _latest(times)]
    for sid, count, created in cell_rows:
        checked_ints((count, created), "a cell's created_at", sid)
        entry = per_session.setdefault(sid, [0, 0, 0, 0, 0])
        entry[0] = int(count)
        entry[4] = max(entry[4], int(created))
    return {sid: _Totals(sid, *entry) for sid, entry in per_session.items()}


def _latest(times: Sequence[int | None]) -> int:
    return max((int(t) for t in times if t is not None), default=0)


def _is_expired(totals: _Totals, cutoff: int, keep_tombstones: bool) -> bool:
    if totals.last_activity >= cutoff:
        return False
    # A session that is all tombstones already has nothing to drop.
    return not keep_tombstones or totals.droppable > 0


def _expired_session(totals: _Totals, cells_gone: int, observations_gone: int) -> ExpiredSession:
    last = from_micros(totals.last_activity)
    assert last is not None
    return ExpiredSession(totals.session_id, last, cells_gone, observations_gone, totals.payload_bytes)


def _expire(
    conn: Connection, session_id: str, cutoff: int, now: int, keep_tombstones: bool
) -> ExpiredSession | None:
    """Purge one session in the caller's transaction, if it is still idle."""
    # Re-read under the lock: a host may have touched the session since the scan.
    totals = _locked_totals(conn, session_id)
    if totals is None or not _is_expired(totals, cutoff, keep_tombstones):
        return None
    params = {"p_session_id": session_id, "p_cutoff": cutoff}
    if keep_tombstones:
        changed = conn.execute(_tombstone_session, {**params, "p_now": now}).rowcount
        return _expired_session(totals, 0, int(changed))
    observations_gone = conn.execute(_delete_session_observations, params).rowcount
    cells_gone = conn.execute(_delete_session_cells, params).rowcount
    return _expired_session(totals, int(cells_gone), int(observations_gone))


def _check_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput(f"now must be a timezone-aware datetime, not {now!r}")
    return now


def gc(
    store: Transactions,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    keep_tombstones: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> GcReport:
    """Purge the sessions with no activity during the last ``older_than``.

    Activity is the latest of a session's cell creations and its observations'
    begin, record and release times. Each session goes in a transaction of its
    own that first checks again that it is still idle, so a crash leaves whole
    sessions and a session a host touched meanwhile is kept. ``dry_run`` only
    reports. ``keep_tombstones`` deletes nothing: it turns the session's
    retained, failed and pending rows into tombstones (payload dropped,
    generation kept), so a late request still gets ``AlreadyReleased``.
    """
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise InvalidInput(f"older_than must be a non-negative timedelta, not {older_than!r}")
    moment = _check_now(now)
    try:
        cutoff_at = moment - older_than
    except OverflowError as exc:
        raise InvalidInput(f"older_than reaches before the year 1: {older_than!r}") from exc
    cutoff, now_us = to_micros(cutoff_at), to_micros(moment)
    scan = store.read(_totals)
    candidates = sorted(
        (t for t in scan.values() if _is_expired(t, cutoff, keep_tombstones)), key=lambda t: t.session_id
    )
    if dry_run:
        expired = tuple(
            _expired_session(t, 0, t.droppable)
            if keep_tombstones
            else _expired_session(t, t.cells, t.observations)
            for t in candidates
        )
        return GcReport(cutoff_at, True, keep_tombstones, expired)
    done: list[ExpiredSession] = []
    skipped: list[str] = []
    for index, totals in enumerate(candidates, start=1):
        expire = functools.partial(
            _expire, session_id=totals.session_id, cutoff=cutoff, now=now_us, keep_tombstones=keep_tombstones
        )
        result = store.write(expire, session_id=totals.session_id)
        if result is None:
            skipped.append(totals.session_id)
        else:
            done.append(result)
        if progress is not None:
            progress(index, len(candidates))
    return GcReport(cutoff_at, False, keep_tombstones, tuple(done), tuple(skipped))


_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """Return the timedelta of an age such as ``30m``, ``12h``, ``7d`` or ``2w``."""
    match = _AGE.match(text)
    if match is None:
        raise InvalidInput(f"an age is a whole number and a unit (s, m, h, d or w), like 7d; not {text!r}")
    try:
        return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError as exc:
        raise InvalidInput(f"the age {text!r} is too large") from exc
