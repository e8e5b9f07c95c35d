"""``begin`` (docs/protocol.md): one test per rule, in the order the page states them."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from sqlalchemy import select, update
from support.tables import dump

from codemode_store import ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    FutureGeneration,
    GenerationConflict,
    InvalidInput,
    ObservationInProgress,
    UnknownCell,
)
from codemode_store.schema import cells, observations

#: Each test of ``store`` runs on the sync and the asyncio front end, on every backend.
pytestmark = pytest.mark.front_ends()


@pytest.fixture
def session(store: ObservationStore) -> StoreSession:
    """A session with one new, open cell ``c``."""
    handle = store.session("s")
    handle.create_cell("c")
    return handle


def test_unknown_cell_is_unknown_cell(session: StoreSession) -> None:
    with pytest.raises(UnknownCell):
        session.begin("never-created", 0)


def test_unknown_session_is_unknown_cell(store: ObservationStore, session: StoreSession) -> None:
    with pytest.raises(UnknownCell):
        store.session("other").begin("c", 0)


@pytest.mark.parametrize("generation", [1, 2, 2**63 - 1])
def test_first_generation_of_a_new_cell_must_be_zero(session: StoreSession, generation: int) -> None:
    with pytest.raises(FutureGeneration):
        session.begin("c", generation)
    assert session.history("c") == []


def test_begin_zero_writes_a_pending_row_and_returns_none(session: StoreSession) -> None:
    assert session.begin("c", 0) is None
    observation = session.get("c", 0)
    assert observation is not None
    assert (observation.generation, observation.state, observation.kind) == (0, "pending", None)
    assert observation.outcome is None and observation.error_text is None
    assert observation.payload_bytes is None and observation.recorded_at is None


def test_begin_next_generation_writes_a_pending_row(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    assert session.begin("c", 1) is None
    observation = session.get("c", 1)
    assert observation is not None and observation.state == "pending"
    assert [o.generation for o in session.history("c")] == [0, 1]


def _yielded(s: StoreSession) -> None:
    s.record("c", 0, Outcome.yielded([TextItem("partial")]))


def _missing(s: StoreSession) -> None:
    s.record("c", 0, Outcome.missing())


def _failed(s: StoreSession) -> None:
    s.fail("c", 0, "runtime lost")


@pytest.mark.parametrize("finish", [_yielded, _missing, _failed], ids=["yielded", "missing", "failed"])
def test_begin_next_releases_the_previous_generation_whatever_it_holds(
    session: StoreSession, finish: Callable[[StoreSession], None]
) -> None:
    session.begin("c", 0)
    finish(session)
    before = session.get("c", 0)
    assert before is not None and before.state in ("retained", "failed")

    session.begin("c", 1)

    after = session.get("c", 0)
    assert after is not None
    assert after.state == "released"
    assert after.outcome is None and after.error_text is None
    assert after.released_at is not None
    assert (after.kind, after.payload_bytes, after.payload_sha256, after.recorded_at) == (
        before.kind,
        before.payload_bytes,
        before.payload_sha256,
        before.recorded_at,
    )


def test_begin_next_while_previous_is_pending_is_in_progress(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    before = dump(store)
    with pytest.raises(ObservationInProgress):
        session.begin("c", 1)
    assert dump(store) == before


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.yielded([TextItem("partial")]),
        Outcome.completed([TextItem("done")], error_text="boom"),
        Outcome.terminated([]),
        Outcome.missing(),
    ],
    ids=lambda o: o.kind,
)
def test_begin_of_a_retained_generation_replays_it_unchanged(
    store: ObservationStore, session: StoreSession, outcome: Outcome
) -> None:
    session.begin("c", 0)
    session.record("c", 0, outcome)
    stored = session.get("c", 0)
    before = dump(store)

    replay = session.begin("c", 0)
    again = session.begin("c", 0)

    assert replay == stored == again
    assert replay is not None and replay.state == "retained" and replay.outcome == outcome
    assert dump(store) == before


def test_begin_of_a_failed_generation_replays_the_error(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.fail("c", 0, "the runtime went away")
    before = dump(store)

    replay = session.begin("c", 0)

    assert replay is not None
    assert (replay.state, replay.kind, replay.outcome) == ("failed", None, None)
    assert replay.error_text == "the runtime went away"
    assert dump(store) == before


def test_replay_with_the_same_request_is_accepted(session: StoreSession) -> None:
    session.begin("c", 0, {"yield_time_ms": 10000, "max_tokens": 5})
    session.record("c", 0, Outcome.yielded([]))
    # Key order does not matter: the request is kept as canonical JSON.
    replay = session.begin("c", 0, {"max_tokens": 5, "yield_time_ms": 10000})
    assert replay is not None and replay.state == "retained"


def test_the_request_is_kept_with_the_row_as_canonical_json(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0, {"yield_time_ms": 10000, "max_tokens": 5, "note": "é"})
    query = select(observations.c.request).where(observations.c.generation == 0)
    with store.engine.connect() as conn:
        kept = conn.execute(query).scalar_one()
    # RFC 8785 form of this object: sorted keys, no spaces, text not escaped.
    assert kept == '{"max_tokens":5,"note":"é","yield_time_ms":10000}'


def test_a_request_with_nested_mappings_and_tuples_is_kept_as_json_objects_and_lists(
    store: ObservationStore, session: StoreSession
) -> None:
    request = {"limits": MappingProxyType({"yield_time_ms": 10, "tags": ("a", "b")})}
    session.begin("c", 0, request)
    query = select(observations.c.request).where(observations.c.generation == 0)
    with store.engine.connect() as conn:
        kept = conn.execute(query).scalar_one()
    assert kept == '{"limits":{"tags":["a","b"],"yield_time_ms":10}}'
    session.record("c", 0, Outcome.yielded([]))
    # The same request as plain JSON values is the same fingerprint.
    replay = session.begin("c", 0, {"limits": {"tags": ["a", "b"], "yield_time_ms": 10}})
    assert replay is not None and replay.state == "retained"


def test_replay_with_a_different_request_is_a_conflict(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0, {"yield_time_ms": 10000})
    session.record("c", 0, Outcome.yielded([]))
    before = dump(store)
    with pytest.raises(GenerationConflict) as caught:
        session.begin("c", 0, {"yield_time_ms": 20000})
    assert caught.value.generation == 0
    assert dump(store) == before


def test_a_number_written_another_way_is_another_request(session: StoreSession) -> None:
    # Compared as canonical JSON, as on the wire: 1 and 1.0 are different tokens.
    session.begin("c", 0, {"yield_time_ms": 1})
    session.record("c", 0, Outcome.yielded([]))
    with pytest.raises(GenerationConflict):
        session.begin("c", 0, {"yield_time_ms": 1.0})
    replay = session.begin("c", 0, {"yield_time_ms": 1})
    assert replay is not None and replay.state == "retained"


def test_replay_of_a_failed_generation_with_a_different_request_is_a_conflict(session: StoreSession) -> None:
    session.begin("c", 0, {"yield_time_ms": 1})
    session.fail("c", 0, "error")
    with pytest.raises(GenerationConflict):
        session.begin("c", 0, {"yield_time_ms": 2})


@pytest.mark.parametrize(
    ("first", "replayed"),
    [(None, {"yield_time_ms": 1}), ({"yield_time_ms": 1}, None)],
    ids=["stored-none", "given-none"],
)
def test_request_is_compared_only_when_both_were_given(
    session: StoreSession, first: dict[str, Any] | None, replayed: dict[str, Any] | None
) -> None:
    session.begin("c", 0, first)
    session.record("c", 0, Outcome.yielded([]))
    replay = session.begin("c", 0, replayed)
    assert replay is not None and replay.state == "retained"


@pytest.mark.parametrize(
    ("first", "replayed"),
    [(None, {"yield_time_ms": 1}), ({"yield_time_ms": 1}, None)],
    ids=["stored-none", "given-none"],
)
def test_request_of_a_failed_generation_is_compared_only_when_both_were_given(
    store: ObservationStore,
    session: StoreSession,
    first: dict[str, Any] | None,
    replayed: dict[str, Any] | None,
) -> None:
    session.begin("c", 0, first)
    session.fail("c", 0, "lost")
    before = dump(store)
    replay = session.begin("c", 0, replayed)
    assert replay is not None and (replay.state, replay.error_text) == ("failed", "lost")
    assert dump(store) == before


def test_begin_of_a_tombstone_is_already_released(store: ObservationStore, session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([]))
    session.begin("c", 1)
    before = dump(store)
    with pytest.raises(AlreadyReleased) as caught:
        session.begin("c", 0)
    assert caught.value.generation == 0
    assert dump(store) == before


def test_begin_of_an_explicitly_released_generation_is_already_released(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([]))
    session.release("c", 0)
    with pytest.raises(AlreadyReleased):
        session.begin("c", 0)


def test_begin_of_a_pending_generation_is_in_progress(store: ObservationStore, session: StoreSession) -> None:
    session.begin("c", 0)
    before = dump(store)
    with pytest.raises(ObservationInProgress):
        session.begin("c", 0)
    assert dump(store) == before


@pytest.mark.parametrize("ahead", [2, 3, 1000])
def test_begin_beyond_the_next_generation_is_future(session: StoreSession, ahead: int) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([]))
    with pytest.raises(FutureGeneration) as caught:
        session.begin("c", ahead)
    assert caught.value.generation == ahead


def test_the_largest_generation_is_a_value_not_invalid_input(session: StoreSession) -> None:
    with pytest.raises(FutureGeneration):
        session.begin("c", 2**63 - 1)


def test_the_largest_generation_is_stored_and_read_back(
    store: ObservationStore, session: StoreSession
) -> None:
    # Move the cell to generation 2**63-2 behind the store's back: no test can begin 2**63 times.
    last = 2**63 - 2
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("partial")]))
    key = (observations.c.session_id == "s") & (observations.c.cell_id == "c")
    with store.engine.begin() as conn:
        conn.execute(update(observations).where(key).values(generation=last))
        conn.execute(
            update(cells)
            .where((cells.c.session_id == "s") & (cells.c.cell_id == "c"))
            .values(last_generation=last)
        )

    assert session.begin("c", last + 1) is None
    session.record("c", last + 1, Outcome.completed([TextItem("done")]))

    assert [(o.generation, o.state) for o in session.history("c")] == [
        (last, "released"),
        (last + 1, "retained"),
    ]
    replay = session.begin("c", 2**63 - 1)
    assert replay is not None and replay.generation == 2**63 - 1
    assert replay.outcome == Outcome.completed([TextItem("done")])
    (summary,) = session.cells()
    assert summary.last_generation == 2**63 - 1
    assert session.release("c", 2**63 - 1) is True


def _close_by_completed(s: StoreSession) -> None:
    s.begin("c", 0)
    s.record("c", 0, Outcome.completed([TextItem("done")]))


def _close_by_terminated(s: StoreSession) -> None:
    s.begin("c", 0)
    s.record("c", 0, Outcome.terminated([]))


def _close_by_close_cell(s: StoreSession) -> None:
    s.begin("c", 0)
    s.record("c", 0, Outcome.yielded([]))
    s.close_cell("c")


@pytest.mark.parametrize(
    "close",
    [_close_by_completed, _close_by_terminated, _close_by_close_cell],
    ids=["completed", "terminated", "close_cell"],
)
def test_next_generation_of_a_closed_cell_is_cell_closed(
    store: ObservationStore, session: StoreSession, close: Callable[[StoreSession], None]
) -> None:
    close(session)
    before = dump(store)
    with pytest.raises(CellClosed) as caught:
        session.begin("c", 1)
    assert caught.value.generation == 1
    assert dump(store) == before


def test_generation_zero_of_a_closed_new_cell_is_cell_closed(session: StoreSession) -> None:
    session.close_cell("c")
    with pytest.raises(CellClosed):
        session.begin("c", 0)


def test_future_generation_of_a_closed_cell_is_future(session: StoreSession) -> None:
    _close_by_completed(session)
    with pytest.raises(FutureGeneration):
        session.begin("c", 2)


def test_closed_cell_with_pending_last_generation_is_cell_closed(session: StoreSession) -> None:
    # Decision: the closed cell is the reason no generation g can start, whatever g-1 holds.
    session.begin("c", 0)
    session.close_cell("c")
    with pytest.raises(CellClosed):
        session.begin("c", 1)


def test_a_closed_cell_still_replays_its_last_generation(session: StoreSession) -> None:
    _close_by_completed(session)
    replay = session.begin("c", 0)
    assert replay is not None and replay.outcome == Outcome.completed([TextItem("done")])


@pytest.mark.parametrize(
    "request_",
    [
        ["yield_time_ms", 1],
        "yield_time_ms=1",
        {1: "integer key"},
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"x": object()},
        {"x": "a\ud800"},
    ],
    ids=["list", "str", "int-key", "nan", "inf", "set", "bytes", "object", "lone-surrogate"],
)
def test_a_request_that_is_not_a_json_object_is_invalid_input(
    store: ObservationStore, session: StoreSession, request_: Any
) -> None:
    before = dump(store)
    with pytest.raises(InvalidInput):
        session.begin("c", 0, request_)
    assert dump(store) == before
