"""``StoreSession.observe``: one test per rule of issue 12 §1, on every backend."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from support.tables import stored

from codemode_store import ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    GenerationConflict,
    InvalidInput,
    NotPending,
    UnknownCell,
)
from codemode_store.observe import CANCELLED_TEXT, FAILURE_TEXT_LIMIT


@pytest.fixture
def session(store: ObservationStore) -> StoreSession:
    """A session with one open cell ``c`` and no generation yet."""
    handle = store.session("s")
    handle.create_cell("c")
    return handle


class Counted:
    """A ``run`` that returns ``result`` (or raises it) and counts its calls."""

    def __init__(self, result: object) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def never() -> Outcome:
    raise AssertionError("run was called for a generation that must not run")


def assert_nothing_pending(store: ObservationStore) -> None:
    assert store.pending() == []


# -- start or replay ---------------------------------------------------------------------


def test_a_new_generation_runs_once_and_returns_what_was_stored(
    store: ObservationStore, session: StoreSession
) -> None:
    outcome = Outcome.yielded([TextItem("partial ✓")])
    run = Counted(outcome)

    observation = session.observe("c", 0, run)

    assert run.calls == 1
    assert (observation.state, observation.kind, observation.outcome) == ("retained", "yielded", outcome)
    # Built from what was written, yet equal to a fresh read, field by field.
    assert observation == session.get("c", 0)
    data = stored(store, "payload", 0)
    assert data is not None
    assert observation.payload_bytes == len(data)
    assert observation.payload_sha256 == hashlib.sha256(data).hexdigest()


def test_a_replay_returns_the_stored_observation_without_running(session: StoreSession) -> None:
    first = session.observe("c", 0, Counted(Outcome.completed([TextItem("done")], error_text="exit 3")))

    assert session.observe("c", 0, never) == first


def test_a_replay_of_a_failed_generation_returns_the_failure_without_running(session: StoreSession) -> None:
    failed = session.observe("c", 0, Counted(RuntimeError("lost")))

    again = session.observe("c", 0, never)

    assert again == failed
    assert (again.state, again.error_text) == ("failed", "RuntimeError: lost")


def test_the_next_generation_acknowledges_the_previous_one(session: StoreSession) -> None:
    session.observe("c", 0, Counted(Outcome.yielded([TextItem("a")])))
    session.observe("c", 1, Counted(Outcome.yielded([TextItem("b")])))

    previous = session.get("c", 0)
    assert previous is not None and previous.state == "released"
    with pytest.raises(AlreadyReleased):
        session.observe("c", 0, never)


def test_a_wire_object_is_recorded_like_its_outcome(session: StoreSession) -> None:
    wire = {"type": "completed", "cell_id": "c", "content_items": [{"type": "input_text", "text": "x"}]}

    observation = session.observe("c", 0, Counted(wire))

    assert observation.outcome == Outcome.from_wire(wire)
    assert observation.outcome is not None and observation.outcome.to_wire("c") == {
        **wire,
        "error_text": None,
    }
    assert observation == session.get("c", 0)


def test_the_request_is_stored_and_a_different_one_is_a_conflict(session: StoreSession) -> None:
    first = session.observe("c", 0, Counted(Outcome.yielded([])), request={"yield_time_ms": 50})

    assert session.observe("c", 0, never, request={"yield_time_ms": 50}) == first
    with pytest.raises(GenerationConflict):
        session.observe("c", 0, never, request={"yield_time_ms": 51})


def test_the_rules_of_begin_apply_before_anything_runs(
    store: ObservationStore, session: StoreSession
) -> None:
    with pytest.raises(UnknownCell):
        session.observe("nope", 0, never)
    session.observe("c", 0, Counted(Outcome.terminated([TextItem("stopped")])))
    with pytest.raises(CellClosed):
        session.observe("c", 1, never)
    assert_nothing_pending(store)


# -- exceptions of run ----------------------------------------------------------------------


def test_an_exception_of_run_fails_the_generation_and_returns_the_failure(
    store: ObservationStore, session: StoreSession
) -> None:
    failed = session.observe("c", 0, Counted(ValueError("boom")))

    assert (failed.state, failed.kind, failed.outcome, failed.error_text) == (
        "failed",
        None,
        None,
        "ValueError: boom",
    )
    assert failed == session.get("c", 0)
    assert failed.payload_sha256 == hashlib.sha256(b"ValueError: boom").hexdigest()
    assert_nothing_pending(store)
    # The failure is consumed like any answer: the next generation runs.
    assert session.observe("c", 1, Counted(Outcome.yielded([]))).state == "retained"


def test_an_exception_without_a_message_is_its_type(session: StoreSession) -> None:
    assert session.observe("c", 0, Counted(TimeoutError())).error_text == "TimeoutError"


def test_the_failure_text_is_bounded(session: StoreSession) -> None:
    failed = session.observe("c", 0, Counted(RuntimeError("x" * 100_000)))

    assert failed.error_text is not None
    assert len(failed.error_text) == FAILURE_TEXT_LIMIT
    assert failed.error_text.startswith("RuntimeError: xxx") and failed.error_text.endswith("…")


def test_a_message_that_is_not_storable_text_still_fails_the_generation(
    store: ObservationStore, session: StoreSession
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise TypeError("no")

    assert (
        session.observe("c", 0, Counted(Unprintable())).error_text == "Unprintable: <message not printable>"
    )
    assert session.observe("c", 1, Counted(ValueError("lone \ud800"))).error_text == "ValueError: lone ?"
    assert_nothing_pending(store)


# -- interruptions ------------------------------------------------------------------------------


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), SystemExit(3)], ids=["ctrl-c", "exit"])
def test_an_interruption_fails_the_generation_as_cancelled_and_goes_on(
    store: ObservationStore, session: StoreSession, interruption: BaseException
) -> None:
    with pytest.raises(type(interruption)) as raised:
        session.observe("c", 0, Counted(interruption))

    assert raised.value is interruption
    failed = session.get("c", 0)
    assert failed is not None and (failed.state, failed.error_text) == ("failed", CANCELLED_TEXT)
    assert_nothing_pending(store)
    assert session.observe("c", 0, never) == failed


# -- a run that returns something else ----------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        42,
        None,
        "completed",
        {"type": "completed", "cell_id": "c", "content_items": "not a list"},
        {"type": "yielded", "cell_id": "another-cell", "content_items": []},
    ],
    ids=["int", "none", "str", "malformed-wire", "wire-of-another-cell"],
)
def test_a_run_returning_no_outcome_fails_the_generation_and_raises_invalid_input(
    store: ObservationStore, session: StoreSession, result: object
) -> None:
    with pytest.raises(InvalidInput) as raised:
        session.observe("c", 0, Counted(result))

    failed = session.get("c", 0)
    assert failed is not None and failed.state == "failed"
    assert failed.error_text == f"InvalidInput: {raised.value}"
    assert "session 's', cell 'c', generation 0" in failed.error_text
    assert_nothing_pending(store)


def test_a_coroutine_is_no_outcome_for_the_sync_observe(
    store: ObservationStore, session: StoreSession
) -> None:
    async def run() -> Outcome:
        return Outcome.yielded([])

    # Closed, not left to warn "never awaited" (warnings are errors in this suite).
    with pytest.raises(InvalidInput, match="coroutine"):
        session.observe("c", 0, run)  # type: ignore[arg-type]
    assert_nothing_pending(store)


def test_a_payload_over_the_limit_fails_the_generation(store_url: str) -> None:
    with ObservationStore.open(store_url, max_payload_bytes=200) as small:
        s = small.session("s")
        s.create_cell("c")
        with pytest.raises(InvalidInput, match="max_payload_bytes"):
            s.observe("c", 0, Counted(Outcome.yielded([TextItem("x" * 500)])))
        failed = s.get("c", 0)
        assert failed is not None and failed.state == "failed"
        assert failed.error_text is not None and failed.error_text.startswith("InvalidInput: ")
        assert small.pending() == []


# -- the record itself refused -----------------------------------------------------------------


def test_a_generation_failed_meanwhile_is_not_recorded_over(
    store: ObservationStore, session: StoreSession
) -> None:
    def run_while_another_host_starts() -> Outcome:
        # Another host opening the same store fails every pending row, this one too.
        with ObservationStore.open(store.url) as other:
            assert other.fail_pending("another host started") == 1
        return Outcome.yielded([TextItem("late")])

    with pytest.raises(NotPending):
        session.observe("c", 0, run_while_another_host_starts)
    # The other host's failure stands: observe's own fail, on the way out, changed nothing.
    failed = session.get("c", 0)
    assert failed is not None and (failed.state, failed.error_text) == ("failed", "another host started")
