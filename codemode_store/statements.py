"""The SQL of the operations, built once at import with bind parameters.

Each is a Core statement wrapped in a :class:`~codemode_store.driver.Statement`
that names its parameters in the order the operations pass their values. A
statement is named for what it does to which rows (``select_*``, ``insert_*``,
``update_*``, ``delete_*``), never for the operation that runs it: the
operations' names belong to ``operations.py``.

No statement is assembled from user values: every value reaches the database
as a bound parameter. ``with_for_update`` takes a row lock on PostgreSQL and
renders nothing on SQLite, whose writers are already serialised by
``BEGIN IMMEDIATE``.

Host ownership (docs/several-hosts.md) costs no statement: the statements of a store opened
with a host id (``*_owned``, ``*_fenced``) carry it in their guards. ``begin``
advances the cell only if the host's incarnation is still the current one,
checked (and, on PostgreSQL, ``KEY SHARE``-locked: see ``hosts.py``) inside
the same statement; ``record`` and ``fail`` change a pending row only if it was
begun by the same host id and incarnation (a store without host id: only rows
begun without one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ScalarSelect,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from .driver import Statement
from .schema import cells, hosts, observations

o = observations.c
c = cells.c


_where_cell = and_(c.session_id == bindparam("p_session_id"), c.cell_id == bindparam("p_cell_id"))
_where_obs_cell = and_(o.session_id == bindparam("p_session_id"), o.cell_id == bindparam("p_cell_id"))
_where_obs_key = and_(_where_obs_cell, o.generation == bindparam("p_generation"))

#: The parameters naming a cell, and one of its generations, in the order operations pass them.
_CELL = ("p_session_id", "p_cell_id")
_KEY = (*_CELL, "p_generation")

#: The columns of an Observation, payload last (it may be large).
OBSERVATION_COLUMNS = (
    o.session_id,
    o.cell_id,
    o.generation,
    o.state,
    o.kind,
    o.payload_bytes,
    o.payload_sha256,
    o.recorded_at,
    o.released_at,
    o.host_id,
    o.payload,
)


def insert_or_ignore(table: Table, values: Mapping[str, Any], *names: str) -> Statement:
    """Insert ``values`` into ``table``; a row with the same key is left alone (row count 0)."""
    return Statement(
        {
            "sqlite": sqlite.insert(table).values(**values).on_conflict_do_nothing(),
            "postgresql": postgresql.insert(table).values(**values).on_conflict_do_nothing(),
        },
        *names,
    )


# -- cells -------------------------------------------------------------------

_new_cell = {
    "session_id": bindparam("p_session_id"),
    "cell_id": bindparam("p_cell_id"),
    "closed": False,
    "last_generation": None,
    "created_at": bindparam("p_now"),
}

#: Insert an open cell; a cell that exists already is left alone (row count 0).
#: No integrity error, so a duplicate is the store's own answer, not a driver's.
insert_cell = insert_or_ignore(cells, _new_cell, "p_session_id", "p_cell_id", "p_now")

select_cell_locked = Statement(
    select(c.closed, c.last_generation).where(_where_cell).with_for_update(), *_CELL
)

select_cell = Statement(select(c.closed, c.last_generation).where(_where_cell), *_CELL)

_advance = (
    update(cells)
    .where(
        _where_cell,
        c.closed == False,  # noqa: E712 - SQL comparison, not Python
        func.coalesce(c.last_generation, -1) == bindparam("p_previous"),
    )
    .values(last_generation=bindparam("p_generation"))
)

#: Advance an open cell to generation ``generation`` if that is its next one.
update_cell_generation = Statement(_advance, *_KEY, "p_previous")

#: The host's incarnation is still the current one (``KEY SHARE``-locked on PostgreSQL).
_current_incarnation = exists(
    select(hosts.c.host_id)
    .where(hosts.c.host_id == bindparam("p_host_id"), hosts.c.incarnation == bindparam("p_incarnation"))
    .with_for_update(read=True, key_share=True)
)
_advance_fenced = _advance.where(_current_incarnation)
_HOST = ("p_host_id", "p_incarnation")

#: ``update_cell_generation`` for a store with a host id: only while its incarnation is current.
update_cell_generation_fenced = Statement(_advance_fenced, *_KEY, "p_previous", *_HOST)

#: The current incarnation of a host id, ``KEY SHARE``-locked on PostgreSQL (``None``: never claimed).
select_host_incarnation = Statement(
    select(hosts.c.incarnation)
    .where(hosts.c.host_id == bindparam("p_host_id"))
    .with_for_update(read=True, key_share=True),
    "p_host_id",
)

_close = update(cells).where(_where_cell).values(closed=True)
update_cell_closed = Statement(_close, *_CELL)

# -- observations ------------------------------------------------------------

_pending_row = {
    "session_id": bindparam("p_session_id"),
    "cell_id": bindparam("p_cell_id"),
    "generation": bindparam("p_generation"),
    "state": "pending",
    "begun_at": bindparam("p_now"),
    "request": bindparam("p_request"),
    "host_id": bindparam("p_host_id"),
    "incarnation": bindparam("p_incarnation"),
}

insert_pending = Statement(insert(observations).values(**_pending_row), *_KEY, "p_now", "p_request", *_HOST)

select_observation = Statement(select(*OBSERVATION_COLUMNS, o.request).where(_where_obs_key), *_KEY)

#: The cell and, if it exists, one of its generations, in one round trip.
select_cell_and_observation = Statement(
    select(c.closed, c.last_generation, *OBSERVATION_COLUMNS)
    .select_from(
        cells.outerjoin(
            observations,
            and_(
                o.session_id == c.session_id,
                o.cell_id == c.cell_id,
                o.generation == bindparam("p_generation"),
            ),
        )
    )
    .where(_where_cell),
    *_KEY,
)

select_state = Statement(select(o.state, o.kind).where(_where_obs_key), *_KEY)

select_state_and_digest = Statement(
    select(o.state, o.kind, o.payload_sha256, o.host_id, o.incarnation).where(_where_obs_key), *_KEY
)

select_state_and_host = Statement(select(o.state, o.host_id, o.incarnation).where(_where_obs_key), *_KEY)

select_history = Statement(select(*OBSERVATION_COLUMNS).where(_where_obs_cell).order_by(o.generation), *_CELL)

select_pending = Statement(
    select(*OBSERVATION_COLUMNS).where(o.state == "pending").order_by(o.session_id, o.cell_id, o.generation)
)

_PAYLOAD = ("p_payload", "p_payload_bytes", "p_payload_sha256", "p_now")
_stored_payload: dict[str, Any] = {
    "payload": bindparam("p_payload"),
    "payload_bytes": bindparam("p_payload_bytes"),
    "payload_sha256": bindparam("p_payload_sha256"),
    "recorded_at": bindparam("p_now"),
}

#: A pending row begun by this host id and incarnation, or by a store without host id.
_owned = and_(o.host_id == bindparam("p_host_id"), o.incarnation == bindparam("p_incarnation"))
_anonymous = o.host_id.is_(None)

_retain_any = (
    update(observations)
    .where(_where_obs_key, o.state == "pending")
    .values(state="retained", kind=bindparam("p_kind"), **_stored_payload)
)
_retain = _retain_any.where(_anonymous)
_retain_owned = _retain_any.where(_owned)
update_retained = Statement(_retain, *_KEY, "p_kind", *_PAYLOAD)
update_retained_owned = Statement(_retain_owned, *_KEY, "p_kind", *_PAYLOAD, *_HOST)

_fail_any = (
    update(observations).where(_where_obs_key, o.state == "pending").values(state="failed", **_stored_payload)
)
update_failed = Statement(_fail_any.where(_anonymous), *_KEY, *_PAYLOAD)
update_failed_owned = Statement(_fail_any.where(_owned), *_KEY, *_PAYLOAD, *_HOST)

_drop_payload: dict[str, Any] = {"state": "released", "payload": None, "released_at": bindparam("p_now")}

#: Release a terminal outcome: the common case of ``release`` in one statement.
update_released_terminal = Statement(
    update(observations)
    # Two literals rather than IN: an IN list is an "expanding" parameter.
    .where(_where_obs_key, o.payload.is_not(None), or_(o.kind == "completed", o.kind == "terminated"))
    .values(**_drop_payload),
    *_KEY,
    "p_now",
)

#: Release whatever a payload-holding generation holds (guarded, idempotent).
update_released = Statement(
    update(observations).where(_where_obs_key, o.payload.is_not(None)).values(**_drop_payload), *_KEY, "p_now"
)

_session = c.session_id == bindparam("p_session_id")
select_session_cells_locked = Statement(select(c.cell_id).where(_session).with_for_update(), "p_session_id")

delete_session_observations = Statement(
    delete(observations).where(o.session_id == bindparam("p_session_id")), "p_session_id"
)
delete_session_cells = Statement(delete(cells).where(_session), "p_session_id")

# -- the common paths in one statement (PostgreSQL, in autocommit) -----------------------
#
# Each is the whole effect of an operation's common case, or nothing: the steps
# after the first depend on its RETURNING rows, so a refused guard leaves every
# row as it was and the operation falls back to its locked transaction (which
# finds out which rule applies). Locks are taken in the order every writer
# uses, the cell's row before an observation's.


def _typed(value: Any, column: str) -> Any:
    """Return a value of the pending row as a SELECT list item of the column's type."""
    column_type = observations.c[column].type
    if isinstance(value, str):
        return literal(value, column_type)
    return bindparam(value.key, type_=column_type)


_pending_select = [_typed(value, column) for column, value in _pending_row.items()]


def _insert_first_pending(advance: Any) -> Any:
    """begin(0) of a new cell in one statement, the cell advanced by ``advance``."""
    advanced = advance.returning(c.last_generation).cte("advanced")
    inserted = insert(observations).from_select(
        list(_pending_row), select(*_pending_select).select_from(advanced)
    )
    return select(
        select(func.count()).select_from(inserted.returning(o.generation).cte("inserted")).scalar_subquery()
    )


_previous_key = and_(_where_obs_cell, o.generation == bindparam("p_previous"))


def _release_previous_and_insert_pending(advance: Any) -> Any:
    """begin(g > 0) in one statement, the cell advanced by ``advance``."""
    advanced = (
        advance.where(select(o.generation).where(_previous_key, o.payload.is_not(None)).exists())
        .returning(c.last_generation)
        .cte("advanced")
    )
    released = (
        update(observations)
        .where(_previous_key, o.payload.is_not(None), select(advanced.c.last_generation).exists())
        .values(**_drop_payload)
        .returning(o.generation)
        .cte("released")
    )
    inserted = (
        insert(observations)
        .from_select(list(_pending_row), select(*_pending_select).select_from(advanced))
        .returning(o.generation)
        .cte("inserted")
    )
    return select(select(func.count()).select_from(inserted).scalar_subquery()).add_cte(released)


_BEGIN = (*_KEY, "p_previous", "p_now", "p_request", *_HOST)

#: begin(0) of a new cell: advance it and write the pending row; 1 = done.
insert_first_pending_at_once = Statement(_insert_first_pending(_advance), *_BEGIN)
insert_first_pending_at_once_fenced = Statement(_insert_first_pending(_advance_fenced), *_BEGIN)

#: begin(g > 0): advance the cell if generation g−1 holds its answer, release
#: g−1 (the implicit acknowledgement) and write the pending row; 1 = done.
release_previous_and_insert_pending_at_once = Statement(
    _release_previous_and_insert_pending(_advance), *_BEGIN
)
release_previous_and_insert_pending_at_once_fenced = Statement(
    _release_previous_and_insert_pending(_advance_fenced), *_BEGIN
)


def _retain_and_close(retain: Any) -> Any:
    """record(g) of a closing outcome in one statement, the row stored by ``retain``."""
    locked_cell = select(c.session_id).where(_where_cell).with_for_update().cte("locked_cell")
    recorded = retain.where(select(locked_cell.c.session_id).exists()).returning(o.generation).cte("recorded")
    closed = _close.where(select(recorded.c.generation).exists()).returning(c.cell_id).cte("closed")
    return select(select(func.count()).select_from(recorded).scalar_subquery()).add_cte(closed)


#: record(g) of a closing outcome: lock the cell, store the outcome of pending
#: g and close the cell; 1 = done.
update_retained_and_cell_closed_at_once = Statement(_retain_and_close(_retain), *_KEY, "p_kind", *_PAYLOAD)
update_retained_and_cell_closed_at_once_owned = Statement(
    _retain_and_close(_retain_owned), *_KEY, "p_kind", *_PAYLOAD, *_HOST
)

# -- summaries ---------------------------------------------------------------

#: The rows whose payload is still stored: retained outcomes and failure texts.
holds_payload = or_(o.state == "retained", o.state == "failed")  # no IN: see update_released_terminal

_last = observations.alias("last_observation")


def of_cell(expression: Any) -> ScalarSelect[Any]:
    """Return ``expression`` aggregated over the observations of the outer query's cell."""
    return select(expression).where(o.session_id == c.session_id, o.cell_id == c.cell_id).scalar_subquery()


#: Bytes of payload still stored, summed over the observations of a subquery.
held_bytes = func.coalesce(func.sum(case((holds_payload, o.payload_bytes), else_=0)), 0)

#: A cell summary (``operations.to_cell_summary``): the cell, its last generation's
#: state and kind, its totals and times. Correlated subqueries, not a join on an
#: aggregate of the whole table: each reads only its cell's rows through the
#: primary key, so a page of cells costs the same however many observations
#: the rest of the store holds.
CELL_SUMMARY_COLUMNS = (
    c.session_id,
    c.cell_id,
    c.closed,
    c.last_generation,
    _last.c.state,
    _last.c.kind,
    of_cell(func.count()),
    of_cell(held_bytes),
    c.created_at,
    of_cell(func.max(o.begun_at)),
    of_cell(func.max(o.recorded_at)),
    of_cell(func.max(o.released_at)),
)

#: The cells joined with their last observation (if any): what ``CELL_SUMMARY_COLUMNS`` read.
cells_with_last_observation = cells.outerjoin(
    _last,
    and_(
        _last.c.session_id == c.session_id,
        _last.c.cell_id == c.cell_id,
        _last.c.generation == c.last_generation,
    ),
)


def _cell_summaries(*, of_one_session: bool) -> Select[Any]:
    """Build the summary query, for every session or for the one named ``p_session_id``."""
    query = (
        select(*CELL_SUMMARY_COLUMNS)
        .select_from(cells_with_last_observation)
        .order_by(c.session_id, c.created_at, c.cell_id)
    )
    if of_one_session:
        query = query.where(c.session_id == bindparam("p_session_id"))
    return query


#: One row a cell: its flags, its last generation's state and kind, its totals.
select_cell_summaries = Statement(_cell_summaries(of_one_session=False))
select_cell_summaries_of_session = Statement(_cell_summaries(of_one_session=True), "p_session_id")
