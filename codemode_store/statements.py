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
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from .driver import Statement
from .schema import cells, observations

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
    o.payload,
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
insert_cell = Statement(
    {
        "sqlite": sqlite.insert(cells).values(**_new_cell).on_conflict_do_nothing(),
        "postgresql": postgresql.insert(cells).values(**_new_cell).on_conflict_do_nothing(),
    },
    "p_session_id",
    "p_cell_id",
    "p_now",
)

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
}

insert_pending = Statement(insert(observations).values(**_pending_row), *_KEY, "p_now", "p_request")

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

select_state_and_digest = Statement(select(o.state, o.kind, o.payload_sha256).where(_where_obs_key), *_KEY)

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

_retain = (
    update(observations)
    .where(_where_obs_key, o.state == "pending")
    .values(state="retained", kind=bindparam("p_kind"), **_stored_payload)
)
update_retained = Statement(_retain, *_KEY, "p_kind", *_PAYLOAD)

update_failed = Statement(
    update(observations)
    .where(_where_obs_key, o.state == "pending")
    .values(state="failed", **_stored_payload),
    *_KEY,
    *_PAYLOAD,
)

update_every_pending_failed = Statement(
    update(observations).where(o.state == "pending").values(state="failed", **_stored_payload), *_PAYLOAD
)

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
_advanced = _advance.returning(c.last_generation).cte("advanced")
_insert_pending_after = insert(observations).from_select(
    list(_pending_row), select(*_pending_select).select_from(_advanced)
)

#: begin(0) of a new cell: advance it and write the pending row; 1 = done.
insert_first_pending_at_once = Statement(
    select(
        select(func.count())
        .select_from(_insert_pending_after.returning(o.generation).cte("inserted"))
        .scalar_subquery()
    ),
    *_KEY,
    "p_previous",
    "p_now",
    "p_request",
)

_previous_key = and_(_where_obs_cell, o.generation == bindparam("p_previous"))
_advanced_after_previous = (
    _advance.where(select(o.generation).where(_previous_key, o.payload.is_not(None)).exists())
    .returning(c.last_generation)
    .cte("advanced")
)
_released_previous = (
    update(observations)
    .where(_previous_key, o.payload.is_not(None), select(_advanced_after_previous.c.last_generation).exists())
    .values(**_drop_payload)
    .returning(o.generation)
    .cte("released")
)
_inserted_next = (
    insert(observations)
    .from_select(list(_pending_row), select(*_pending_select).select_from(_advanced_after_previous))
    .returning(o.generation)
    .cte("inserted")
)

#: begin(g > 0): advance the cell if generation g−1 holds its answer, release
#: g−1 (the implicit acknowledgement) and write the pending row; 1 = done.
release_previous_and_insert_pending_at_once = Statement(
    select(select(func.count()).select_from(_inserted_next).scalar_subquery()).add_cte(_released_previous),
    *_KEY,
    "p_previous",
    "p_now",
    "p_request",
)

_locked_cell = select(c.session_id).where(_where_cell).with_for_update().cte("locked_cell")
_recorded = _retain.where(select(_locked_cell.c.session_id).exists()).returning(o.generation).cte("recorded")
_closed = _close.where(select(_recorded.c.generation).exists()).returning(c.cell_id).cte("closed")

#: record(g) of a closing outcome: lock the cell, store the outcome of pending
#: g and close the cell; 1 = done.
update_retained_and_cell_closed_at_once = Statement(
    select(select(func.count()).select_from(_recorded).scalar_subquery()).add_cte(_closed),
    *_KEY,
    "p_kind",
    *_PAYLOAD,
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
