"""create_cell, close_cell, the reads, pending, fail_pending, end_session (docs/protocol.md); public names."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.tables import dump

from codemode_store import ImageItem, ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import DuplicateCell, UnknownCell

#: Each test of ``store`` runs on the sync and the asyncio front end; the async one on SQLite
#: only, which keeps a PostgreSQL run short (there every test creates and drops a database).
pytestmark = pytest.mark.front_ends(async_backends=["sqlite"])

DEFAULT_FAIL_TEXT = "observation ended before producing a result"


@pytest.fixture
def session(store: ObservationStore) -> StoreSession:
    """A session with one new, open cell ``c``."""
    handle = store.session("s")
    handle.create_cell("c")
    return handle


# -- public names -------------------------------------------------------------------------


def test_the_public_names_of_section_4_are_importable() -> None:
    # Exactly the two import statements of the public API.
    from codemode_store import ImageItem, Observation, ObservationStore, Outcome, TextItem
    from codemode_store.errors import (
        AlreadyReleased,
        CellClosed,
        DuplicateCell,
        FutureGeneration,
        GenerationConflict,
        InvalidInput,
        NotPending,
        NotReleasable,
        ObservationInProgress,
        SchemaError,
        StoreError,
        UnknownCell,
    )

    errors = (InvalidInput, UnknownCell, DuplicateCell, FutureGeneration, CellClosed, ObservationInProgress)
    errors += (NotPending, GenerationConflict, AlreadyReleased, NotReleasable, SchemaError)
    assert all(issubclass(error, StoreError) for error in errors)
    assert len(set(errors)) == 11
    assert all(callable(name) for name in (ImageItem, Observation, ObservationStore, Outcome, TextItem))


def test_a_session_handle_writes_nothing(store: ObservationStore) -> None:
    before = dump(store)
    handle = store.session("thread-1")
    assert handle.session_id == "thread-1"
    assert dump(store) == before
    assert store.cells() == []


def test_an_observation_is_a_frozen_value(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("y")]))
    observation = session.get("c", 0)
    assert observation is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        observation.state = "released"  # type: ignore[misc]
    assert observation == session.get("c", 0)
    assert hash(observation) == hash(session.get("c", 0))


# -- create_cell ---------------------------------------------------------------------------


def test_create_cell_registers_an_open_cell(session: StoreSession) -> None:
    (summary,) = session.cells()
    assert (summary.session_id, summary.cell_id, summary.closed) == ("s", "c", False)
    assert (summary.last_generation, summary.last_state, summary.last_kind) == (None, None, None)
    assert (summary.observations, summary.retained_bytes) == (0, 0)
    assert session.history("c") == []


def test_a_second_create_of_the_same_cell_is_duplicate_cell(
    store: ObservationStore, session: StoreSession
) -> None:
    before = dump(store)
    with pytest.raises(DuplicateCell) as caught:
        session.create_cell("c")
    assert (caught.value.session_id, caught.value.cell_id) == ("s", "c")
    assert dump(store) == before


def test_the_same_cell_id_in_another_session_is_another_cell(
    store: ObservationStore, session: StoreSession
) -> None:
    other = store.session("t")
    other.create_cell("c")
    other.begin("c", 0)
    assert session.get("c", 0) is None
    assert [(x.session_id, x.cell_id) for x in store.cells()] == [("s", "c"), ("t", "c")]


# -- close_cell --------------------------------------------------------------------------------


def test_close_cell_marks_an_open_cell_closed(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([]))
    session.close_cell("c")
    (summary,) = session.cells()
    assert summary.closed is True
    observation = session.get("c", 0)
    assert observation is not None and observation.state == "retained"


def test_closing_a_closed_cell_is_a_no_op(store: ObservationStore, session: StoreSession) -> None:
    session.close_cell("c")
    before = dump(store)
    session.close_cell("c")
    assert dump(store) == before
    (summary,) = session.cells()
    assert summary.closed is True


# -- get, history, cells ------------------------------------------------------------------------


def test_get_of_a_generation_the_cell_does_not_have_is_none(session: StoreSession) -> None:
    assert session.get("c", 0) is None
    session.begin("c", 0)
    assert session.get("c", 1) is None
    assert session.get("c", 2**63 - 1) is None


def test_get_returns_each_state(session: StoreSession) -> None:
    session.begin("c", 0)
    pending = session.get("c", 0)
    session.fail("c", 0, "lost")
    failed = session.get("c", 0)
    session.begin("c", 1)
    released = session.get("c", 0)
    session.record("c", 1, Outcome.yielded([TextItem("y")]))
    retained = session.get("c", 1)
    assert [o.state if o else None for o in (pending, failed, released, retained)] == [
        "pending",
        "failed",
        "released",
        "retained",
    ]
    assert failed is not None and failed.error_text == "lost"
    assert retained is not None and retained.outcome == Outcome.yielded([TextItem("y")])
    assert all(o is not None and (o.session_id, o.cell_id) == ("s", "c") for o in (pending, retained))


def test_get_of_a_large_payload_holds_at_most_two_copies_of_it(tmp_path: Path) -> None:
    # The fetched bytes are decoded to text while the row is built, so they are gone
    # before the JSON is parsed: text plus parsed strings, not bytes plus both.
    outcome = Outcome.completed([ImageItem("data:image/png;base64," + "A" * 8_000_000, "high")])
    with ObservationStore.open(tmp_path / "store.db") as store:
        s = store.session("s")
        s.create_cell("big")
        s.begin("big", 0)
        s.record("big", 0, outcome)
        size = s.history("big")[0].payload_bytes
        tracemalloc.start()
        try:
            got = s.get("big", 0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got is not None and got.outcome == outcome
    assert peak < 2.5 * size, peak / size


def test_history_lists_every_generation_in_order(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("0")]))
    session.begin("c", 1)
    session.fail("c", 1, "lost")
    session.begin("c", 2)
    session.record("c", 2, Outcome.missing())
    session.begin("c", 3)
    history = session.history("c")
    assert [(o.generation, o.state) for o in history] == [
        (0, "released"),
        (1, "released"),
        (2, "released"),
        (3, "pending"),
    ]
    assert history == [session.get("c", g) for g in range(4)]


def test_cells_summarises_the_session_cells(store: ObservationStore, session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    session.begin("c", 1)
    session.record("c", 1, Outcome.completed([TextItem("bb")]))
    session.create_cell("d")
    session.begin("d", 0)
    session.fail("d", 0, "lost")
    store.session("t").create_cell("e")

    summaries = {x.cell_id: x for x in session.cells()}
    assert set(summaries) == {"c", "d"}
    c, d = summaries["c"], summaries["d"]
    last_c = session.get("c", 1)
    last_d = session.get("d", 0)
    assert last_c is not None and last_d is not None
    assert (c.closed, c.last_generation, c.last_state, c.last_kind, c.observations) == (
        True,
        1,
        "retained",
        "completed",
        2,
    )
    assert c.retained_bytes == last_c.payload_bytes
    assert (d.closed, d.last_generation, d.last_state, d.last_kind, d.observations) == (
        False,
        0,
        "failed",
        None,
        1,
    )
    assert d.retained_bytes == last_d.payload_bytes
    assert c.last_activity >= c.created_at
    assert {(x.session_id, x.cell_id) for x in store.cells()} == {("s", "c"), ("s", "d"), ("t", "e")}
    assert [x.cell_id for x in store.cells("t")] == ["e"]


def test_cells_of_an_unknown_session_is_empty(store: ObservationStore, session: StoreSession) -> None:
    assert store.session("nobody").cells() == []
    assert store.cells("nobody") == []


# -- pending and fail_pending ---------------------------------------------------------------------


def _two_sessions_with_pending(store: ObservationStore) -> None:
    for session_id in ("s", "t"):
        handle = store.session(session_id)
        handle.create_cell("c")
        handle.begin("c", 0)
        handle.record("c", 0, Outcome.yielded([]))
        handle.begin("c", 1)
        handle.create_cell("d")
        handle.begin("d", 0)
        handle.record("d", 0, Outcome.completed([]))


def test_pending_lists_the_pending_observations_of_every_session(store: ObservationStore) -> None:
    assert store.pending() == []
    _two_sessions_with_pending(store)
    pending = store.pending()
    assert [(o.session_id, o.cell_id, o.generation, o.state) for o in pending] == [
        ("s", "c", 1, "pending"),
        ("t", "c", 1, "pending"),
    ]


@pytest.mark.parametrize("text", [None, "host restarted at 12:00"], ids=["default-text", "custom-text"])
def test_fail_pending_fails_every_pending_row_with_the_text(
    store: ObservationStore, text: str | None
) -> None:
    _two_sessions_with_pending(store)
    count = store.fail_pending() if text is None else store.fail_pending(text)
    assert count == 2
    assert store.pending() == []
    for session_id in ("s", "t"):
        replay = store.session(session_id).begin("c", 1)
        assert replay is not None and replay.state == "failed"
        assert replay.error_text == (DEFAULT_FAIL_TEXT if text is None else text)
        done = store.session(session_id).get("d", 0)
        assert done is not None and done.state == "retained"


def test_fail_pending_with_nothing_pending_returns_zero(store: ObservationStore) -> None:
    assert store.fail_pending() == 0
    _two_sessions_with_pending(store)
    store.fail_pending()
    before = dump(store)
    assert store.fail_pending() == 0
    assert dump(store) == before


# -- end_session ------------------------------------------------------------------------------------


def test_end_session_deletes_every_row_and_returns_how_many_observations(store: ObservationStore) -> None:
    _two_sessions_with_pending(store)
    other_before = store.cells("t")
    other_history = store.session("t").history("c")

    assert store.end_session("s") == 3

    assert store.cells("s") == []
    with pytest.raises(UnknownCell):
        store.session("s").history("c")
    assert store.cells("t") == other_before
    assert store.session("t").history("c") == other_history
    assert {o.session_id for o in store.pending()} == {"t"}


def test_end_session_of_an_unknown_session_returns_zero(
    store: ObservationStore, session: StoreSession
) -> None:
    before = dump(store)
    assert store.end_session("nobody") == 0
    assert dump(store) == before


def test_a_session_ended_then_used_again_starts_afresh(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([]))
    assert store.end_session("s") == 1
    session.create_cell("c")
    assert session.begin("c", 0) is None


# -- UnknownCell for every operation that names a cell -------------------------------------------------

OPERATIONS: dict[str, Callable[[StoreSession, str], Any]] = {
    "begin": lambda s, cell: s.begin(cell, 0),
    "begin-with-request": lambda s, cell: s.begin(cell, 0, {"yield_time_ms": 1}),
    "record-yielded": lambda s, cell: s.record(cell, 0, Outcome.yielded([])),
    "record-completed": lambda s, cell: s.record(cell, 0, Outcome.completed([])),
    "record-wire": lambda s, cell: s.record(cell, 0, {"type": "missing", "cell_id": cell}),
    "fail": lambda s, cell: s.fail(cell, 0, "e"),
    "release": lambda s, cell: s.release(cell, 0),
    "close_cell": lambda s, cell: s.close_cell(cell),
    "get": lambda s, cell: s.get(cell, 0),
    "history": lambda s, cell: s.history(cell),
}


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=list(OPERATIONS))
def test_every_operation_on_an_unknown_cell_is_unknown_cell(
    store: ObservationStore, session: StoreSession, operation: Callable[[StoreSession, str], Any]
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([]))
    before = dump(store)
    with pytest.raises(UnknownCell) as caught:
        operation(session, "unknown")
    assert (caught.value.session_id, caught.value.cell_id) == ("s", "unknown")
    with pytest.raises(UnknownCell):
        operation(store.session("unknown-session"), "c")
    assert dump(store) == before
