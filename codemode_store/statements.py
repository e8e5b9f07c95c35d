"""The SQL of the operations, built once at import with bind parameters.

No statement is assembled from user values: every value reaches the database
as a bound parameter. ``with_for_update`` takes a row lock on PostgreSQL and
renders nothing on SQLite, whose writers are already serialised by
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Dialect,
    LargeBinary,
    Select,
    TypeDecorator,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)

from .schema import cells, observations

o = observations.c
c = cells.c


class PayloadText(TypeDecorator[bytes | str]):
    """A payload read as text: UTF-8 decoded while the row is fetched.

    Decoding here, before the row is built, lets the fetched bytes go as soon
    as their text exists; decoding later (or letting ``json.loads`` do it) keeps
    the bytes, the text and the parsed strings alive at once: a third copy of a
    large payload. Bytes that are not UTF-8 (a file altered behind the store's
    back) come through unchanged, for ``to_observation`` to report.
    """

    impl = LargeBinary
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | str | None:
        """Return the payload's text, or its bytes when they are not UTF-8."""
        if value is None:
            return None
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value)


_cell_key = and_(c.session_id == bindparam("p_session_id"), c.cell_id == bindparam("p_cell_id"))
_obs_cell = and_(o.session_id == bindparam("p_session_id"), o.cell_id == bindparam("p_cell_id"))
_obs_key = and_(_obs_cell, o.generation == bindparam("p_generation"))

#: The columns of an Observation, payload last (it may be large), read as text.
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
    type_coerce(o.payload, PayloadText()).label("payload"),
)

# -- cells -------------------------------------------------------------------

insert_cell = insert(cells).values(
    session_id=bindparam("p_session_id"),
    cell_id=bindparam("p_cell_id"),
    closed=False,
    last_generation=None,
    created_at=bindparam("p_now"),
)

lock_cell = select(c.closed, c.last_generation).where(_cell_key).with_for_update()

read_cell = select(c.closed, c.last_generation).where(_cell_key)

#: Advance an open cell to generation ``generation`` if that is its next one.
advance_cell = (
    update(cells)
    .where(
        _cell_key,
        c.closed == False,  # noqa: E712 - SQL comparison, not Python
        func.coalesce(c.last_generation, -1) == bindparam("p_previous"),
    )
    .values(last_generation=bindparam("p_generation"))
)

close_cell = update(cells).where(_cell_key).values(closed=True)

# -- observations ------------------------------------------------------------

insert_pending = insert(observations).values(
    session_id=bindparam("p_session_id"),
    cell_id=bindparam("p_cell_id"),
    generation=bindparam("p_generation"),
    state="pending",
    begun_at=bindparam("p_now"),
    request=bindparam("p_request"),
)

read_observation = select(*OBSERVATION_COLUMNS, o.request).where(_obs_key)

#: The cell and, if it exists, one of its generations, in one round trip.
read_cell_and_observation = (
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
    .where(_cell_key)
)

read_state = select(o.state, o.kind).where(_obs_key)

read_history = select(*OBSERVATION_COLUMNS).where(_obs_cell).order_by(o.generation)

read_pending = (
    select(*OBSERVATION_COLUMNS).where(o.state == "pending").order_by(o.session_id, o.cell_id, o.generation)
)

record = (
    update(observations)
    .where(_obs_key, o.state == "pending")
    .values(
        state="retained",
        kind=bindparam("p_kind"),
        payload=bindparam("p_payload"),
        payload_bytes=bindparam("p_payload_bytes"),
        payload_sha256=bindparam("p_payload_sha256"),
        recorded_at=bindparam("p_now"),
    )
)

fail = (
    update(observations)
    .where(_obs_key, o.state == "pending")
    .values(
        state="failed",
        payload=bindparam("p_payload"),
        payload_bytes=bindparam("p_payload_bytes"),
        payload_sha256=bindparam("p_payload_sha256"),
        recorded_at=bindparam("p_now"),
    )
)

fail_all_pending = (
    update(observations)
    .where(o.state == "pending")
    .values(
        state="failed",
        payload=bindparam("p_payload"),
        payload_bytes=bindparam("p_payload_bytes"),
        payload_sha256=bindparam("p_payload_sha256"),
        recorded_at=bindparam("p_now"),
    )
)

_drop_payload: dict[str, Any] = {"state": "released", "payload": None, "released_at": bindparam("p_now")}

#: Release a terminal outcome: the common case of ``release`` in one statement.
release_terminal = (
    update(observations)
    # Two literals rather than IN: an IN list is an "expanding" parameter that
    # SQLAlchemy re-renders on every call of this hot statement.
    .where(_obs_key, o.payload.is_not(None), or_(o.kind == "completed", o.kind == "terminated"))
    .values(**_drop_payload)
)

#: Release whatever a payload-holding generation holds (guarded, idempotent).
release_any = update(observations).where(_obs_key, o.payload.is_not(None)).values(**_drop_payload)

lock_session_cells = select(c.cell_id).where(c.session_id == bindparam("p_session_id")).with_for_update()

delete_session_observations = delete(observations).where(o.session_id == bindparam("p_session_id"))
delete_session_cells = delete(cells).where(c.session_id == bindparam("p_session_id"))

# -- summaries ---------------------------------------------------------------

#: The rows whose payload is still stored: retained outcomes and failure texts.
holds_payload = o.state.in_(("retained", "failed"))

_last = observations.alias("last_observation")


def _cell_summaries(*, of_one_session: bool) -> Select[Any]:
    """Build the summary query, for every session or for the one named ``p_session_id``.

    The session filter goes inside the per-cell aggregate too: filtered only
    outside, SQLite materialises the aggregate over every observation in the file.
    """
    per_cell_query = select(
        o.session_id,
        o.cell_id,
        func.count().label("observations"),
        func.coalesce(func.sum(case((holds_payload, o.payload_bytes), else_=0)), 0).label("retained_bytes"),
        func.max(o.begun_at).label("last_begun"),
        func.max(o.recorded_at).label("last_recorded"),
        func.max(o.released_at).label("last_released"),
    ).group_by(o.session_id, o.cell_id)
    if of_one_session:
        per_cell_query = per_cell_query.where(o.session_id == bindparam("p_session_id"))
    per_cell = per_cell_query.subquery("per_cell")
    query = (
        select(
            c.session_id,
            c.cell_id,
            c.closed,
            c.last_generation,
            _last.c.state,
            _last.c.kind,
            func.coalesce(per_cell.c.observations, 0),
            func.coalesce(per_cell.c.retained_bytes, 0),
            c.created_at,
            per_cell.c.last_begun,
            per_cell.c.last_recorded,
            per_cell.c.last_released,
        )
        .select_from(
            cells.outerjoin(
                per_cell,
                and_(per_cell.c.session_id == c.session_id, per_cell.c.cell_id == c.cell_id),
            ).outerjoin(
                _last,
                and_(
                    _last.c.session_id == c.session_id,
                    _last.c.cell_id == c.cell_id,
                    _last.c.generation == c.last_generation,
                ),
            )
        )
        .order_by(c.session_id, c.created_at, c.cell_id)
    )
    if of_one_session:
        query = query.where(c.session_id == bindparam("p_session_id"))
    return query


#: One row a cell: its flags, its last generation's state and kind, its totals.
cell_summaries = _cell_summaries(of_one_session=False)
cell_summaries_of_session = _cell_summaries(of_one_session=True)
