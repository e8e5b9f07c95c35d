"""Read-only views of a store for people and scripts: listings, one observation, totals.

The query functions take an open :class:`ObservationStore` and only read.
The listings (:func:`iter_sessions`, :func:`iter_cells`, :func:`iter_history`)
stream: rows come from an iterating (server-side on PostgreSQL) cursor as they
are read, in index order, so the first rows of a store with millions of
observations come as fast as those of a small one; :func:`iter_hosts` lists
the host ids (docs/several-hosts.md). :func:`record` turns any of
the values they return (and the store's own ``Observation`` and
``CellSummary``) into a JSON object with the stable keys listed in
``RECORD_KEYS`` (documented in docs/cli.md).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import (
    Connection,
    ScalarSelect,
    Select,
    bindparam,
    case,
    distinct,
    func,
    literal,
    not_,
    select,
    text,
    tuple_,
)

from .. import migrate, space
from ..damage import checked_ints
from ..engine import READ_ONLY
from ..errors import FutureGeneration, InvalidInput, UnknownCell
from ..hosts import HostInfo, host_info, select_host_infos
from ..jsonable import json_object
from ..observation import CellSummary, Observation, ObservationState, from_micros
from ..operations import to_cell_summary, to_observation
from ..schema import cells, observations
from ..statements import CELL_SUMMARY_COLUMNS, OBSERVATION_COLUMNS, cells_with_last_observation, held_bytes
from ..store import ObservationStore
from ..translate import errors_of_database
from ..validation import check_identifier
from .admin import file_sizes, shown
from .errors import NoOutcome

__all__ = [
    "CELL_STATES",
    "RECORD_KEYS",
    "CellSummary",
    "HostInfo",
    "NoOutcome",
    "Observation",
    "SessionSummary",
    "StoreStats",
    "cell_ids",
    "iter_cells",
    "iter_history",
    "iter_hosts",
    "iter_sessions",
    "observation",
    "record",
    "session_ids",
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
        "host_id",
    ),
    HostInfo: ("host_id", "incarnation", "lease_expires_at", "live", "pending"),
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


def record(value: SessionSummary | CellSummary | Observation | StoreStats | HostInfo) -> dict[str, Any]:
    """Return the JSON object of a value: its ``RECORD_KEYS``, times as ISO 8601 UTC (``json_object``)."""
    return json_object(value, RECORD_KEYS[type(value)])


# -- streaming listings --------------------------------------------------------------

#: The states ``iter_cells(state=...)`` filters on: the state of a cell's last generation.
CELL_STATES: tuple[ObservationState, ...] = get_args(ObservationState)

_NO_IDLE_LIMIT = text("SET LOCAL idle_in_transaction_session_timeout = 0")

#: Rows fetched from the cursor at a time (a server-side cursor on PostgreSQL).
FETCH_ROWS = 500


def _of_session(expression: Any) -> ScalarSelect[Any]:
    """Return ``expression`` aggregated over the observations of the outer query's session."""
    return select(expression).where(o.session_id == c.session_id).scalar_subquery()


_last_in_state = (
    select(literal(1))
    .where(
        o.session_id == c.session_id,
        o.cell_id == c.cell_id,
        o.generation == c.last_generation,
        o.state == bindparam("p_state"),
    )
    .exists()
)


def _stream(
    store: ObservationStore, statement: Select[Any], params: Mapping[str, Any], **key: Any
) -> Generator[Any, None, None]:
    """Yield the rows of ``statement`` from an iterating cursor inside one read transaction."""
    with errors_of_database(**key), store.engine.connect() as conn:
        reader = conn.execution_options(**{READ_ONLY: True})
        # Closed explicitly, also when the caller stops early: a server-side
        # cursor left to the garbage collector stays open on the server.
        with reader.begin():
            if conn.dialect.name == "postgresql":
                # The reader waits on whoever reads the rows (a pager, a slow
                # pipe) and holds no row lock: the store's bound on idle
                # transactions (call_timeout) is for writers, not for it.
                reader.execute(_NO_IDLE_LIMIT)
            streamed = {"yield_per": FETCH_ROWS}
            with reader.execute(statement, dict(params), execution_options=streamed) as result:
                yield from result


def _limited(statement: Select[Any], params: dict[str, Any], limit: int | None) -> Select[Any]:
    if limit is None:
        return statement
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a positive integer, not {limit!r}")
    params["p_limit"] = limit
    return statement.limit(bindparam("p_limit", type_=c.last_generation.type))


def iter_cells(
    store: ObservationStore,
    *,
    session_id: str | None = None,
    state: ObservationState | None = None,
    closed: bool | None = None,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> Iterator[CellSummary]:
    """Yield cell summaries ordered by session id, then cell id, as they are read.

    ``state`` keeps the cells whose last generation is in that state (a cell
    with no observation yet has none); ``closed`` keeps closed (``True``) or
    open (``False``) cells; ``limit`` stops after that many; ``after`` (a
    session id and cell id) starts after that cell: the next page, read from
    the index at that key (no ``OFFSET``).
    """
    params: dict[str, Any] = {}
    statement: Select[Any] = select(*CELL_SUMMARY_COLUMNS).select_from(cells_with_last_observation)
    if session_id is not None:
        params["p_session_id"] = check_identifier(session_id, "session_id")
        statement = statement.where(c.session_id == bindparam("p_session_id"))
    if after is not None:
        params["p_after_session"], params["p_after_cell"] = after
        statement = statement.where(
            tuple_(c.session_id, c.cell_id) > tuple_(bindparam("p_after_session"), bindparam("p_after_cell"))
        )
    if state is not None:
        if state not in CELL_STATES:
            raise InvalidInput(f"state must be one of {', '.join(CELL_STATES)}, not {state!r}")
        params["p_state"] = state
        # EXISTS, not a condition on the joined row: that would let the planner
        # scan every observation by state instead of the cells in key order.
        statement = statement.where(_last_in_state)
    if closed is not None:
        statement = statement.where(c.closed if closed else not_(c.closed))
    # In primary key order, so rows come straight off the index: ordered by
    # creation, a session of 10^5 cells would be read and sorted whole first.
    statement = _limited(statement.order_by(c.session_id, c.cell_id), params, limit)
    for row in _stream(store, statement, params, session_id=session_id):
        yield to_cell_summary(row)


_SESSION_COLUMNS = (
    c.session_id,
    func.count(),
    func.coalesce(func.sum(case((c.closed, 0), else_=1)), 0),
    _of_session(func.count()),
    _of_session(held_bytes),
    func.max(c.created_at),
    _of_session(func.max(o.begun_at)),
    _of_session(func.max(o.recorded_at)),
    _of_session(func.max(o.released_at)),
)


def iter_sessions(
    store: ObservationStore, *, limit: int | None = None, after: str | None = None
) -> Iterator[SessionSummary]:
    """Yield one summary per session that has cells, ordered by session id, as they are read.

    ``after`` starts after that session id (the next page, with no ``OFFSET``).
    """
    params: dict[str, Any] = {}
    statement: Select[Any] = select(*_SESSION_COLUMNS)
    if after is not None:
        params["p_after_session"] = after
        statement = statement.where(c.session_id > bindparam("p_after_session"))
    statement = statement.group_by(c.session_id).order_by(c.session_id)
    for row in _stream(store, _limited(statement, params, limit), params):
        session_id, *values = row
        n_cells, n_open, count, held, created, *times = checked_ints(
            values, "a size or time of its rows", session_id
        )
        activity = max(t for t in (created, *times) if t is not None)
        last_activity = from_micros(activity)
        assert last_activity is not None
        yield SessionSummary(
            session_id=session_id,
            cells=int(n_cells or 0),
            open_cells=int(n_open or 0),
            observations=int(count or 0),
            retained_bytes=int(held or 0),
            last_activity=last_activity,
        )


def sessions(store: ObservationStore) -> list[SessionSummary]:
    """Return one summary per session that has cells, ordered by session id."""
    return list(iter_sessions(store))


_HISTORY_COLUMNS = (
    *OBSERVATION_COLUMNS[:-1],
    # Only a failure's text: a listing never reads the payloads of outcomes.
    case((o.state == "failed", o.payload), else_=None),
)
_cell_known = select(literal(1)).where(
    c.session_id == bindparam("p_session_id"), c.cell_id == bindparam("p_cell_id")
)


def iter_history(
    store: ObservationStore,
    session_id: str,
    cell_id: str,
    *,
    limit: int | None = None,
    after: int | None = None,
) -> Iterator[Observation]:
    """Yield the observations of one cell in generation order, as they are read.

    ``UnknownCell`` when the session does not know the cell. The observations
    carry no ``outcome`` (a listing does not read payloads); a failed one
    carries its ``error_text``. ``after`` starts after that generation.
    """
    session = check_identifier(session_id, "session_id")
    cell = check_identifier(cell_id, "cell_id", session_id=session)
    params: dict[str, Any] = {"p_session_id": session, "p_cell_id": cell}
    statement: Select[Any] = select(*_HISTORY_COLUMNS).where(
        o.session_id == bindparam("p_session_id"), o.cell_id == bindparam("p_cell_id")
    )
    if after is not None:
        params["p_after_generation"] = after
        statement = statement.where(o.generation > bindparam("p_after_generation", type_=o.generation.type))
    statement = _limited(statement.order_by(o.generation), params, limit)
    known = _stream(store, _cell_known, params, session_id=session, cell_id=cell)
    if next(known, None) is None:
        raise UnknownCell("the session does not know this cell", session_id=session, cell_id=cell)
    known.close()
    for row in _stream(store, statement, params, session_id=session, cell_id=cell):
        yield to_observation(list(row), with_outcome=False)


def iter_hosts(store: ObservationStore, *, limit: int | None = None) -> Iterator[HostInfo]:
    """Yield every host id the store has seen, ordered by host id, as they are read.

    ``live`` is judged by the database's clock, as recovery judges it.
    """
    params: dict[str, Any] = {}
    statement = _limited(select_host_infos.clause, params, limit)  # type: ignore[arg-type]
    for row in _stream(store, statement, params):
        yield host_info(row)


# -- ids for shell completion ------------------------------------------------------------

_COMPLETIONS = 200

_session_ids = (
    select(c.session_id)
    .distinct()
    .where(c.session_id >= bindparam("p_prefix"))
    .order_by(c.session_id)
    .limit(_COMPLETIONS)
)
_cell_ids = (
    select(c.cell_id)
    .where(c.session_id == bindparam("p_session_id"), c.cell_id >= bindparam("p_prefix"))
    .order_by(c.cell_id)
    .limit(_COMPLETIONS)
)


def session_ids(store: ObservationStore, prefix: str = "") -> list[str]:
    """Return up to 200 session ids that start with ``prefix``, in order."""
    return _ids(store, _session_ids, {"p_prefix": prefix}, prefix)


def cell_ids(store: ObservationStore, session_id: str, prefix: str = "") -> list[str]:
    """Return up to 200 cell ids of a session that start with ``prefix``, in order."""
    return _ids(store, _cell_ids, {"p_session_id": session_id, "p_prefix": prefix}, prefix)


def _ids(store: ObservationStore, statement: Select[Any], params: dict[str, Any], prefix: str) -> list[str]:
    found = []
    # From the prefix on in index order: the first id without it ends the run.
    for (name,) in _stream(store, statement, params):
        if not str(name).startswith(prefix):
            break
        found.append(str(name))
    return found


# -- one observation ----------------------------------------------------------------------


_last_generation = select(c.last_generation).where(
    c.session_id == bindparam("p_session_id"), c.cell_id == bindparam("p_cell_id")
)


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
        # One row by its key: not a summary of every cell of the session.
        found_cell = store.read(
            lambda conn: conn.execute(_last_generation, {"p_session_id": session, "p_cell_id": cell}).first(),
            session_id=session,
        )
        if found_cell is None:
            raise UnknownCell("the session does not know this cell", session_id=session, cell_id=cell)
        if found_cell[0] is None:
            raise FutureGeneration("the cell has no observation yet", session_id=session, cell_id=cell)
        generation = int(found_cell[0])
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


def _read_totals(conn: Connection) -> tuple[int, int, dict[str, tuple[int, int]]]:
    n_sessions = int(conn.execute(_count_sessions).scalar_one())
    n_cells = int(conn.execute(_count_cells).scalar_one())
    states = {state: (int(count), int(size)) for state, count, size in conn.execute(_by_state)}
    return n_sessions, n_cells, states


def stats(store: ObservationStore) -> StoreStats:
    """Return the totals of the store, its schema revision and (SQLite) its file sizes."""
    n_sessions, n_cells, states = store.read(_read_totals)
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
