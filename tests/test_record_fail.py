"""``record`` and ``fail`` (docs/protocol.md): one test per rule, plus payload limits and wire input."""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta
from typing import Any

import pytest
from support.tables import dump, stored

from codemode_store import ImageItem, ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import GenerationConflict, InvalidInput, NotPending, UnknownCell

#: Each test of ``store`` runs on the sync and the asyncio front end; the async one on SQLite
#: only, which keeps a PostgreSQL run short (there every test creates and drops a database).
pytestmark = pytest.mark.front_ends(async_backends=["sqlite"])


@pytest.fixture
def session(store: ObservationStore) -> StoreSession:
    """A session with one open cell ``c`` whose generation 0 is pending."""
    handle = store.session("s")
    handle.create_cell("c")
    handle.begin("c", 0)
    return handle


OUTCOMES = [
    Outcome.yielded([TextItem("partial"), ImageItem("data:image/png;base64,iVBORw0KGgo=", "high")]),
    Outcome.completed([TextItem("done")], error_text=None),
    Outcome.completed([TextItem("")], error_text="Traceback: boom"),
    Outcome.terminated([ImageItem("data:image/jpeg;base64,/9j/")]),
    Outcome.missing(),
    Outcome.yielded([TextItem("ünïcødé ✓ \x00 \u2028")]),
]


# -- record -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.kind)
def test_record_of_a_pending_generation_retains_the_outcome(
    store: ObservationStore, session: StoreSession, outcome: Outcome
) -> None:
    session.record("c", 0, outcome)

    observation = session.get("c", 0)
    assert observation is not None
    assert (observation.state, observation.kind, observation.outcome) == ("retained", outcome.kind, outcome)
    assert observation.error_text is None and observation.released_at is None
    data = stored(store, "payload", 0)
    assert data is not None
    assert observation.payload_bytes == len(data)
    assert observation.payload_sha256 == hashlib.sha256(data).hexdigest()
    assert stored(store, "payload_sha256", 0) == hashlib.sha256(data).digest()  # the raw digest, not hex
    assert observation.recorded_at is not None
    assert observation.recorded_at.utcoffset() == timedelta(0)
    assert observation.recorded_at.tzinfo is UTC


def test_record_of_the_same_outcome_again_is_a_no_op(store: ObservationStore, session: StoreSession) -> None:
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    before = dump(store)
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    assert dump(store) == before


def test_record_of_the_same_closing_outcome_again_is_a_no_op(
    store: ObservationStore, session: StoreSession
) -> None:
    session.record("c", 0, Outcome.completed([TextItem("a")], error_text="e"))
    before = dump(store)
    session.record("c", 0, Outcome.completed([TextItem("a")], error_text="e"))
    assert dump(store) == before


@pytest.mark.parametrize(
    "different",
    [
        Outcome.yielded([TextItem("b")]),
        Outcome.yielded([TextItem("a"), TextItem("a")]),
        Outcome.completed([TextItem("a")]),
        Outcome.terminated([TextItem("a")]),
        Outcome.missing(),
    ],
    ids=["other-text", "more-items", "completed", "terminated", "missing"],
)
def test_record_of_a_different_outcome_is_a_conflict(
    store: ObservationStore, session: StoreSession, different: Outcome
) -> None:
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    before = dump(store)
    with pytest.raises(GenerationConflict) as caught:
        session.record("c", 0, different)
    assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == ("s", "c", 0)
    assert dump(store) == before


def test_record_of_a_generation_not_begun_is_not_pending(
    store: ObservationStore, session: StoreSession
) -> None:
    before = dump(store)
    with pytest.raises(NotPending):
        session.record("c", 1, Outcome.yielded([]))
    assert dump(store) == before


def test_record_of_a_failed_generation_is_not_pending(store: ObservationStore, session: StoreSession) -> None:
    session.fail("c", 0, "error")
    before = dump(store)
    with pytest.raises(NotPending):
        session.record("c", 0, Outcome.completed([]))
    assert dump(store) == before


def test_record_of_a_released_generation_is_not_pending(
    store: ObservationStore, session: StoreSession
) -> None:
    session.record("c", 0, Outcome.completed([TextItem("a")]))
    session.release("c", 0)
    before = dump(store)
    # Even the very same outcome: the payload is gone, so there is nothing to compare.
    with pytest.raises(NotPending):
        session.record("c", 0, Outcome.completed([TextItem("a")]))
    assert dump(store) == before


def test_record_of_an_implicitly_released_generation_is_not_pending(session: StoreSession) -> None:
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    session.begin("c", 1)
    with pytest.raises(NotPending):
        session.record("c", 0, Outcome.yielded([TextItem("a")]))


@pytest.mark.parametrize("outcome", [Outcome.completed([]), Outcome.terminated([])], ids=lambda o: o.kind)
def test_completed_and_terminated_close_the_cell(session: StoreSession, outcome: Outcome) -> None:
    session.record("c", 0, outcome)
    (summary,) = session.cells()
    assert summary.closed is True


@pytest.mark.parametrize("outcome", [Outcome.yielded([]), Outcome.missing()], ids=lambda o: o.kind)
def test_yielded_and_missing_leave_the_cell_open(session: StoreSession, outcome: Outcome) -> None:
    session.record("c", 0, outcome)
    (summary,) = session.cells()
    assert summary.closed is False
    assert session.begin("c", 1) is None


def test_a_conflicting_closing_record_does_not_close_the_cell(session: StoreSession) -> None:
    session.record("c", 0, Outcome.yielded([]))
    with pytest.raises(GenerationConflict):
        session.record("c", 0, Outcome.completed([]))
    (summary,) = session.cells()
    assert summary.closed is False


def test_record_of_a_pending_generation_of_a_closed_cell_is_accepted(session: StoreSession) -> None:
    session.close_cell("c")
    session.record("c", 0, Outcome.yielded([TextItem("last words")]))
    observation = session.get("c", 0)
    assert observation is not None and observation.state == "retained"


@pytest.mark.parametrize("outcome", [Outcome.yielded([]), Outcome.completed([])], ids=lambda o: o.kind)
def test_record_on_an_unknown_cell_is_unknown_cell(
    store: ObservationStore, session: StoreSession, outcome: Outcome
) -> None:
    before = dump(store)
    with pytest.raises(UnknownCell):
        session.record("nope", 0, outcome)
    with pytest.raises(UnknownCell):
        store.session("other-session").record("c", 0, outcome)
    assert dump(store) == before


# -- record with a wire object -------------------------------------------------------


def test_record_accepts_a_wire_object(session: StoreSession) -> None:
    wire = {
        "type": "completed",
        "cell_id": "c",
        "content_items": [
            {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "low"}
        ],
        "error_text": "bad",
    }
    session.record("c", 0, wire)
    observation = session.get("c", 0)
    assert observation is not None and observation.outcome is not None
    assert observation.outcome.to_wire("c") == wire
    assert observation.outcome == Outcome.completed([ImageItem("data:image/png;base64,AA==", "low")], "bad")


def test_a_wire_object_and_the_equal_outcome_are_the_same_record(
    store: ObservationStore, session: StoreSession
) -> None:
    session.record("c", 0, Outcome.yielded([TextItem("x")]))
    before = dump(store)
    # The idempotent retry: no GenerationConflict, and nothing changes.
    session.record(
        "c", 0, {"type": "yielded", "cell_id": "c", "content_items": [{"type": "input_text", "text": "x"}]}
    )
    assert dump(store) == before


def test_a_wire_object_for_another_cell_is_invalid_input(
    store: ObservationStore, session: StoreSession
) -> None:
    before = dump(store)
    with pytest.raises(InvalidInput) as caught:
        session.record("c", 0, {"type": "missing", "cell_id": "d"})
    assert caught.value.cell_id == "c" and caught.value.generation == 0
    assert "'d'" in str(caught.value)
    assert dump(store) == before


@pytest.mark.parametrize(
    "outcome",
    [
        {"type": "yielded", "cell_id": "c", "content_items": [], "extra": 1},
        {"type": "yielded", "cell_id": "c", "content_items": [{"type": "input_text", "text": 3}]},
        {"type": "nope", "cell_id": "c"},
        "yielded",
        None,
        ["yielded"],
    ],
    ids=["unknown-key", "non-string-text", "unknown-type", "str", "none", "list"],
)
def test_a_malformed_outcome_is_invalid_input_with_the_key(
    store: ObservationStore, session: StoreSession, outcome: Any
) -> None:
    before = dump(store)
    with pytest.raises(InvalidInput) as caught:
        session.record("c", 0, outcome)
    assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == ("s", "c", 0)
    assert dump(store) == before


# -- max_payload_bytes ------------------------------------------------------------------


def test_a_payload_over_max_payload_bytes_is_refused_and_nothing_is_written(store_url: str) -> None:
    with ObservationStore.open(store_url, max_payload_bytes=200) as small:
        s = small.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.yielded([TextItem("x" * 50)]))
        s.begin("c", 1)
        before = dump(small)

        with pytest.raises(InvalidInput) as caught:
            s.record("c", 1, Outcome.yielded([TextItem("x" * 500)]))
        assert caught.value.generation == 1
        assert "max_payload_bytes" in str(caught.value)
        with pytest.raises(InvalidInput):
            s.fail("c", 1, "e" * 500)
        with pytest.raises(InvalidInput):
            small.fail_pending("e" * 500)

        assert dump(small) == before
        observation = s.get("c", 1)
        assert observation is not None and observation.state == "pending"


# -- fail ---------------------------------------------------------------------------------


def test_fail_of_a_pending_generation_stores_the_error(
    store: ObservationStore, session: StoreSession
) -> None:
    session.fail("c", 0, "runtime crashed ✗")
    observation = session.get("c", 0)
    assert observation is not None
    assert (observation.state, observation.kind, observation.outcome) == ("failed", None, None)
    assert observation.error_text == "runtime crashed ✗"
    data = stored(store, "payload", 0)
    assert data is not None
    assert observation.payload_bytes == len(data)
    assert observation.payload_sha256 == hashlib.sha256(data).hexdigest()
    assert stored(store, "payload_sha256", 0) == hashlib.sha256(data).digest()  # the raw digest, not hex
    assert observation.recorded_at is not None and observation.recorded_at.tzinfo is UTC


def test_a_failed_generation_replays_as_its_error(session: StoreSession) -> None:
    session.fail("c", 0, "lost")
    replay = session.begin("c", 0)
    assert replay is not None and (replay.state, replay.error_text) == ("failed", "lost")


def test_fail_does_not_close_the_cell(session: StoreSession) -> None:
    session.fail("c", 0, "lost")
    assert session.begin("c", 1) is None


@pytest.mark.parametrize("state", ["absent", "retained", "failed", "released"])
def test_fail_of_a_generation_not_pending_is_not_pending(
    store: ObservationStore, session: StoreSession, state: str
) -> None:
    generation = 1 if state == "absent" else 0
    if state == "retained":
        session.record("c", 0, Outcome.yielded([]))
    elif state == "failed":
        session.fail("c", 0, "first")
    elif state == "released":
        session.record("c", 0, Outcome.terminated([]))
        session.release("c", 0)
    before = dump(store)
    with pytest.raises(NotPending) as caught:
        session.fail("c", generation, "second")
    assert caught.value.generation == generation
    assert dump(store) == before


def test_fail_on_an_unknown_cell_is_unknown_cell(store: ObservationStore, session: StoreSession) -> None:
    with pytest.raises(UnknownCell):
        session.fail("nope", 0, "e")


@pytest.mark.parametrize(
    "error_text", [None, 5, b"bytes", "a\ud800"], ids=["none", "int", "bytes", "surrogate"]
)
def test_fail_with_a_bad_error_text_is_invalid_input(
    store: ObservationStore, session: StoreSession, error_text: Any
) -> None:
    before = dump(store)
    with pytest.raises(InvalidInput):
        session.fail("c", 0, error_text)
    assert dump(store) == before
