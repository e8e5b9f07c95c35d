"""Retention hygiene: expire abandoned sessions, check payloads, give space back.

A host that crashes never calls ``end_session``; :func:`gc` purges the sessions
with no activity since a cutoff, one transaction per session. :func:`check`
runs SQLite's ``quick_check`` and re-hashes every stored payload against its
sha256. :func:`space` and :func:`vacuum` report and reclaim free pages. Long
operations report progress to an optional ``progress(done, total)`` callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, bindparam, case, delete, exists, func, select, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter

from . import statements as sql
from .calls import Call
from .errors import InvalidInput, NotADatabase
from .observation import from_micros, to_micros
from .schema import cells, observations
from .translate import errors_of_database, translate

if TYPE_CHECKING:
    from .store import ObservationStore

__all__ = [
    "CheckReport",
    "CorruptPayload",
    "ExpiredSession",
    "GcReport",
    "Progress",
    "SpaceStats",
    "VacuumReport",
    "check",
    "gc",
    "parse_age",
    "space",
    "vacuum",
]

#: Called as ``progress(done, total)`` while a long operation runs.
Progress = Callable[[int, int], None]

o = observations.c
c = cells.c

# -- gc ---------------------------------------------------------------------------------

_holds_payload = o.state.in_(("retained", "failed"))
_droppable = o.state.in_(("retained", "failed", "pending"))
_session: BindParameter[str] = bindparam("p_session_id")
_cutoff: BindParameter[int] = bindparam("p_cutoff")

_observation_totals = select(
    o.session_id,
    func.count(),
    func.coalesce(func.sum(case((_droppable, 1), else_=0)), 0),
    func.coalesce(func.sum(case((_holds_payload, o.payload_bytes), else_=0)), 0),
    func.max(o.begun_at),
    func.max(o.recorded_at),
    func.max(o.released_at),
).group_by(o.session_id)
_cell_totals = select(c.session_id, func.count(), func.max(c.created_at)).group_by(c.session_id)
_observation_totals_of_session = _observation_totals.where(o.session_id == _session)
_cell_totals_of_session = _cell_totals.where(c.session_id == _session)

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


@dataclass(frozen=True, slots=True)
class GcReport:
    """What one ``gc`` run did (or, when ``dry_run``, would do)."""

    cutoff: datetime
    dry_run: bool
    keep_tombstones: bool
    sessions: tuple[ExpiredSession, ...]
    #: Sessions the scan found idle that were touched before their turn came.
    skipped: tuple[str, ...] = ()

    @property
    def cells(self) -> int:
        """Return how many cell rows went."""
        return sum(s.cells for s in self.sessions)

    @property
    def observations(self) -> int:
        """Return how many observation rows went (or became tombstones)."""
        return sum(s.observations for s in self.sessions)

    @property
    def rows(self) -> int:
        """Return how many rows were deleted or rewritten in all."""
        return self.cells + self.observations

    @property
    def bytes_freed(self) -> int:
        """Return how many payload bytes were dropped."""
        return sum(s.bytes_freed for s in self.sessions)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "keep_tombstones": self.keep_tombstones,
            "sessions": len(self.sessions),
            "cells": self.cells,
            "observations": self.observations,
            "rows": self.rows,
            "bytes_freed": self.bytes_freed,
            "skipped": list(self.skipped),
            "expired": [
                {
                    "session_id": s.session_id,
                    "last_activity": s.last_activity.isoformat(),
                    "cells": s.cells,
                    "observations": s.observations,
                    "bytes_freed": s.bytes_freed,
                }
                for s in self.sessions
            ],
        }


@dataclass(frozen=True, slots=True)
class _Totals:
    session_id: str
    cells: int
    observations: int
    droppable: int
    payload_bytes: int
    last_activity: int


def _totals(conn: Connection, session_id: str | None) -> dict[str, _Totals]:
    """Return the row counts and last activity of one session, or of every session."""
    if session_id is None:
        observation_rows = conn.execute(_observation_totals)
        cell_rows = conn.execute(_cell_totals)
    else:
        observation_rows = conn.execute(_observation_totals_of_session, {"p_session_id": session_id})
        cell_rows = conn.execute(_cell_totals_of_session, {"p_session_id": session_id})
    per_session: dict[str, list[int]] = {}
    for sid, count, droppable, size, *times in observation_rows:
        per_session[sid] = [0, int(count), int(droppable), int(size), _latest(times)]
    for sid, count, created in cell_rows:
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
    conn.execute(sql.lock_session_cells, {"p_session_id": session_id}).all()
    # Re-read under the lock: a host may have touched the session since the scan.
    totals = _totals(conn, session_id).get(session_id)
    if totals is None or not _is_expired(totals, cutoff, keep_tombstones):
        return None
    params = {"p_session_id": session_id, "p_cutoff": cutoff}
    if keep_tombstones:
        changed = conn.execute(_tombstone_session, {**params, "p_now": now}).rowcount
        return _expired_session(totals, 0, int(changed))
    observations_gone = conn.execute(_delete_session_observations, params).rowcount
    cells_gone = conn.execute(_delete_session_cells, params).rowcount
    return _expired_session(totals, int(cells_gone), int(observations_gone))


def _expire_call(
    session_id: str, cutoff: int, now: int, keep_tombstones: bool
) -> Call[ExpiredSession | None]:
    return Call(
        lambda conn, _now: _expire(conn, session_id, cutoff, now, keep_tombstones),
        True,
        {"session_id": session_id},
    )


def _check_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput(f"now must be a timezone-aware datetime, not {now!r}")
    return now


def gc(
    store: ObservationStore,
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
    scan = store.run(Call(lambda conn, _now: _totals(conn, None), False))
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
        result = store.run(_expire_call(totals.session_id, cutoff, now_us, keep_tombstones))
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


# -- check ------------------------------------------------------------------------------

#: How many payload keys one read transaction of ``check`` covers.
CHECK_PAGE_ROWS = 512
#: At most this many payload bytes are held in memory at once (but always one row).
CHECK_CHUNK_BYTES = 8 * 1024 * 1024

_key_columns = (o.session_id, o.cell_id, o.generation)
_key = tuple_(*_key_columns)


def _key_params(prefix: str) -> Any:
    return tuple_(
        bindparam(f"{prefix}_session"), bindparam(f"{prefix}_cell"), bindparam(f"{prefix}_generation")
    )


_payload_totals = select(func.count(), func.coalesce(func.sum(o.payload_bytes), 0)).where(_holds_payload)
_payload_keys = (
    select(*_key_columns, o.payload_bytes)
    .where(_holds_payload, _key > _key_params("p_after"))
    .order_by(*_key_columns)
    .limit(bindparam("p_limit"))
)
_payload_range = (
    select(*_key_columns, o.state, o.payload_bytes, o.payload_sha256, o.payload)
    .where(_holds_payload, _key >= _key_params("p_from"), _key <= _key_params("p_to"))
    .order_by(*_key_columns)
)
#: Sorts before every key: identifiers are never empty, generations never negative.
_BEFORE_FIRST_KEY = ("", "", -1)


@dataclass(frozen=True, slots=True)
class CorruptPayload:
    """A stored payload that no longer matches its recorded length or sha256."""

    session_id: str
    cell_id: str
    generation: int
    state: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Return the row's key and the reason as JSON-able values."""
        return {
            "session_id": self.session_id,
            "cell_id": self.cell_id,
            "generation": self.generation,
            "state": self.state,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check`` found.

    ``quick_check`` lists SQLite's complaints about the file (empty when it is
    sound), or is ``None`` where the backend has no such check (PostgreSQL).
    """

    quick_check: tuple[str, ...] | None
    payloads: int
    payload_bytes: int
    corrupt: tuple[CorruptPayload, ...]
    #: Why the payload scan stopped short (a malformed file), or ``None``.
    scan_error: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether nothing is wrong."""
        return not self.quick_check and not self.corrupt and self.scan_error is None

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return {
            "ok": self.ok,
            "quick_check": "not applicable" if self.quick_check is None else list(self.quick_check) or "ok",
            "payloads": self.payloads,
            "payload_bytes": self.payload_bytes,
            "corrupt": [row.to_json() for row in self.corrupt],
            "scan_error": self.scan_error,
        }


def _quick_check(store: ObservationStore) -> tuple[str, ...] | None:
    """Return SQLite's complaints about the file (none when sound), or ``None`` off SQLite."""
    if store.engine.dialect.name != "sqlite":
        return None
    lines: list[str] = []
    try:
        store.run(Call(lambda conn, _now: _quick_check_lines(conn, lines), False))
    except NotADatabase as exc:
        # SQLite ends the list with an error when a page is too damaged to walk.
        lines.append(exc.detail)
    return () if lines == ["ok"] else tuple(lines)


def _quick_check_lines(conn: Connection, lines: list[str]) -> None:
    for row in conn.exec_driver_sql("PRAGMA quick_check"):
        # One row may carry several lines, one per problem of a b-tree page.
        lines.extend(str(row[0]).splitlines())


def _verify(row: Sequence[Any]) -> CorruptPayload | None:
    session_id, cell_id, generation, state, size, sha256, payload = row
    data = bytes(payload)
    problems = []
    if size != len(data):
        problems.append(f"the payload is {len(data)} bytes, the row says {size}")
    if sha256 != hashlib.sha256(data).hexdigest():
        problems.append("its sha256 differs from the one recorded")
    if not problems:
        return None
    return CorruptPayload(session_id, cell_id, int(generation), state, "; ".join(problems))


@dataclass(slots=True)
class _Scan:
    """What the payload scan has seen so far; kept when a page fails half-way."""

    rows: int = 0
    size: int = 0
    corrupt: list[CorruptPayload] = field(default_factory=list)


def _check_page(conn: Connection, after: tuple[str, str, int], scan: _Scan) -> tuple[str, str, int] | None:
    """Re-hash the payloads of the next page of keys after ``after``; return its last key."""
    keys = conn.execute(
        _payload_keys,
        {
            "p_after_session": after[0],
            "p_after_cell": after[1],
            "p_after_generation": after[2],
            "p_limit": CHECK_PAGE_ROWS,
        },
    ).all()
    if not keys:
        return None
    for first, last in _chunks(keys):
        params = {
            "p_from_session": first[0],
            "p_from_cell": first[1],
            "p_from_generation": first[2],
            "p_to_session": last[0],
            "p_to_cell": last[1],
            "p_to_generation": last[2],
        }
        # Rows arrive one at a time from the cursor: a chunk is never held whole.
        for row in conn.execute(_payload_range, params):
            scan.rows += 1
            scan.size += len(row.payload)
            problem = _verify(row)
            if problem is not None:
                scan.corrupt.append(problem)
    return (keys[-1][0], keys[-1][1], int(keys[-1][2]))


def _chunks(keys: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """Yield (first key, last key) of runs of rows holding at most ``CHECK_CHUNK_BYTES``."""
    start = 0
    held = 0
    for index, row in enumerate(keys):
        size = max(int(row[3] or 0), 0)
        if index > start and held + size > CHECK_CHUNK_BYTES:
            yield keys[start], keys[index - 1]
            start, held = index, 0
        held += size
    yield keys[start], keys[-1]


def _scan_payloads(store: ObservationStore, scan: _Scan, progress: Progress | None) -> None:
    total = store.run(Call(lambda conn, _now: int(conn.execute(_payload_totals).one()[1]), False))
    after: tuple[str, str, int] | None = _BEFORE_FIRST_KEY
    while after is not None:
        after = store.run(_check_page_call(after, scan))
        if progress is not None:
            progress(scan.size, max(total, scan.size))


def _check_page_call(after: tuple[str, str, int], scan: _Scan) -> Call[tuple[str, str, int] | None]:
    return Call(lambda conn, _now: _check_page(conn, after, scan), False)


def check(store: ObservationStore, *, progress: Progress | None = None) -> CheckReport:
    """Check the database file and re-hash every stored payload against its sha256.

    Payloads are read a page of keys per read transaction and a few megabytes
    at a time, never all at once; ``progress`` counts payload bytes. A file so
    damaged that the scan cannot go on gives a report with ``scan_error``.
    """
    quick = _quick_check(store)
    scan = _Scan()
    error = None
    try:
        _scan_payloads(store, scan, progress)
    except NotADatabase as exc:
        # A damaged page, which the quick check has most likely named: report it, do not raise.
        error = f"the payload scan stopped after {scan.rows} payloads: {exc}"
    return CheckReport(quick, scan.rows, scan.size, tuple(scan.corrupt), error)


# -- space and vacuum ---------------------------------------------------------------------

_AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}
#: Pages one ``incremental_vacuum`` step frees; each step is a short write transaction.
VACUUM_STEP_PAGES = 2048
_POSTGRES_SIZE = (
    "SELECT pg_total_relation_size('observations') + pg_total_relation_size('cells')"
    " + pg_total_relation_size('alembic_version')"
)


@dataclass(frozen=True, slots=True)
class SpaceStats:
    """How much room the database takes, and how much of it is free.

    On SQLite ``file_bytes`` is the database file and ``wal_bytes`` its
    write-ahead log; the page figures come from its pragmas. On PostgreSQL
    ``file_bytes`` is the size of the store's tables with their indexes and
    TOAST, and the page figures are ``None``.
    """

    backend: str
    file_bytes: int
    wal_bytes: int | None
    page_size: int | None
    page_count: int | None
    freelist_count: int | None
    auto_vacuum: str | None

    @property
    def reclaimable_bytes(self) -> int:
        """Return the bytes of free pages that a vacuum can give back."""
        return (self.freelist_count or 0) * (self.page_size or 0)

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-able values."""
        return {
            "backend": self.backend,
            "file_bytes": self.file_bytes,
            "wal_bytes": self.wal_bytes,
            "page_size": self.page_size,
            "page_count": self.page_count,
            "freelist_count": self.freelist_count,
            "reclaimable_bytes": self.reclaimable_bytes,
            "auto_vacuum": self.auto_vacuum,
        }


@dataclass(frozen=True, slots=True)
class VacuumReport:
    """Space before and after ``vacuum``; ``checkpointed`` is ``None`` off SQLite."""

    before: SpaceStats
    after: SpaceStats
    full: bool
    checkpointed: bool | None

    @property
    def bytes_reclaimed(self) -> int:
        """Return how many bytes the database (with its WAL) shrank by."""
        return _footprint(self.before) - _footprint(self.after)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return {
            "full": self.full,
            "checkpointed": self.checkpointed,
            "bytes_reclaimed": self.bytes_reclaimed,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
        }


def _footprint(stats: SpaceStats) -> int:
    return stats.file_bytes + (stats.wal_bytes or 0)


def _pragma(conn: Connection, name: str) -> int:
    return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def _sqlite_pages(conn: Connection) -> tuple[int, int, int, int]:
    return (
        _pragma(conn, "page_size"),
        _pragma(conn, "page_count"),
        _pragma(conn, "freelist_count"),
        _pragma(conn, "auto_vacuum"),
    )


def space(store: ObservationStore) -> SpaceStats:
    """Return the size of the database and how much of it vacuum can reclaim."""
    if store.engine.dialect.name != "sqlite":
        size = store.run(
            Call(lambda conn, _now: int(conn.exec_driver_sql(_POSTGRES_SIZE).scalar_one()), False)
        )
        return SpaceStats(store.engine.dialect.name, size, None, None, None, None, None)
    page_size, page_count, free, mode = store.run(Call(lambda conn, _now: _sqlite_pages(conn), False))
    path = store.engine.url.database
    file_bytes = page_size * page_count
    wal_bytes = 0
    if path and path != ":memory:" and os.path.exists(path):
        file_bytes = os.path.getsize(path)
        wal = f"{path}-wal"
        wal_bytes = os.path.getsize(wal) if os.path.exists(wal) else 0
    return SpaceStats(
        "sqlite", file_bytes, wal_bytes, page_size, page_count, free, _AUTO_VACUUM_MODES.get(mode, str(mode))
    )


@contextlib.contextmanager
def _driver_connection(engine: Engine) -> Iterator[Any]:
    """Yield a pooled DB-API connection with no transaction open, for what cannot run in one."""
    dbapi = engine.dialect.loaded_dbapi
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        try:
            yield driver
        except dbapi.Error as exc:
            raise translate(DBAPIError.instance(None, None, exc, dbapi.Error)) from exc


def _incremental_step(conn: Connection) -> tuple[int, int]:
    before = _pragma(conn, "freelist_count")
    result = conn.exec_driver_sql(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})")
    if result.returns_rows:
        result.all()  # step the statement to its end, whatever the driver does
    return before, _pragma(conn, "freelist_count")


def _sqlite_vacuum(store: ObservationStore, full: bool, progress: Progress | None) -> bool:
    """Reclaim free pages, then checkpoint the WAL; return whether the checkpoint completed."""
    if full:
        with _driver_connection(store.engine) as driver:
            # Turns incremental auto-vacuum on for a file made before it was the default.
            driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
            driver.execute("VACUUM")
        if progress is not None:
            progress(1, 1)
    else:
        total = None
        while True:
            before, after = store.run(Call(lambda conn, _now: _incremental_step(conn), True))
            total = before if total is None else total
            if progress is not None:
                progress(total - after, total)
            if after == 0 or after >= before:
                break
    with _driver_connection(store.engine) as driver:
        busy, _log, _done = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return bool(busy == 0)


def vacuum(store: ObservationStore, *, full: bool = False, progress: Progress | None = None) -> VacuumReport:
    """Give free space back to the file system and report the sizes before and after.

    On SQLite: ``PRAGMA incremental_vacuum`` in short steps (or, with ``full``,
    a ``VACUUM`` that rewrites the file and turns incremental auto-vacuum on),
    then a ``TRUNCATE`` checkpoint so that the file and its WAL really shrink.
    On PostgreSQL: ``VACUUM`` (``VACUUM FULL``) of the store's tables.
    """
    before = space(store)
    checkpointed: bool | None = None
    if store.engine.dialect.name == "sqlite":
        checkpointed = _sqlite_vacuum(store, full, progress)
    else:
        statement = "VACUUM FULL observations, cells" if full else "VACUUM observations, cells"
        with (
            errors_of_database(),
            store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            conn.exec_driver_sql(statement)
        if progress is not None:
            progress(1, 1)
    return VacuumReport(before, space(store), full, checkpointed)
