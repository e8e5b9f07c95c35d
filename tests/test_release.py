"""``release`` (docs/protocol.md): its cases, the tombstone it leaves, and its return value."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC
from pathlib import Path

import pytest
from support.tables import dump, stored

from codemode_store import ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import FutureGeneration, NotReleasable, UnknownCell

#: Each test of ``store`` runs on the sync and the asyncio front end, on every backend.
pytestmark = pytest.mark.front_ends()


@pytest.fixture
def session(store: ObservationStore) -> StoreSession:
    """A session with one new, open cell ``c``."""
    handle = store.session("s")
    handle.create_cell("c")
    return handle


# -- 1. unknown session or cell -------------------------------------------------------


def test_release_on_an_unknown_cell_is_unknown_cell(store: ObservationStore, session: StoreSession) -> None:
    with pytest.raises(UnknownCell) as caught:
        session.release("never-seen", 0)
    assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == ("s", "never-seen", 0)


def test_release_on_an_unknown_session_is_unknown_cell(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([]))
    before = dump(store)
    with pytest.raises(UnknownCell):
        store.session("never-seen").release("c", 0)
    assert dump(store) == before


def test_release_after_end_session_is_unknown_cell(store: ObservationStore, session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([]))
    store.end_session("s")
    with pytest.raises(UnknownCell):
        session.release("c", 0)


# -- 2. a generation beyond the last ---------------------------------------------------


def test_release_beyond_the_last_generation_is_future(store: ObservationStore, session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([]))
    before = dump(store)
    with pytest.raises(FutureGeneration) as caught:
        session.release("c", 1)
    assert caught.value.generation == 1
    assert dump(store) == before


def test_release_on_a_cell_never_begun_is_future(session: StoreSession) -> None:
    with pytest.raises(FutureGeneration):
        session.release("c", 0)


# -- 3. pending or failed ----------------------------------------------------------------


def test_release_of_a_pending_generation_is_not_releasable(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    before = dump(store)
    with pytest.raises(NotReleasable, match=r"pending; .*records \(or fails\) it first.*asking for the next"):
        session.release("c", 0)
    assert dump(store) == before


def test_release_of_a_failed_generation_is_not_releasable(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.fail("c", 0, "lost")
    before = dump(store)
    # The refusal says what to do instead, as the refusal of a yielded one does.
    with pytest.raises(
        NotReleasable, match="failed; Core acknowledges a failure by asking for the next generation"
    ):
        session.release("c", 0)
    assert dump(store) == before


# -- 4. retained completed or terminated ---------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [Outcome.completed([TextItem("done")], error_text="oops"), Outcome.terminated([TextItem("stopped")])],
    ids=lambda o: o.kind,
)
def test_release_of_a_terminal_outcome_leaves_a_tombstone(
    store: ObservationStore, session: StoreSession, outcome: Outcome
) -> None:
    session.begin("c", 0)
    session.record("c", 0, outcome)
    data = stored(store, "payload", 0)
    assert data is not None
    retained = session.get("c", 0)
    assert retained is not None

    assert session.release("c", 0) is True

    tombstone = session.get("c", 0)
    assert tombstone is not None
    assert stored(store, "payload", 0) is None
    assert (tombstone.state, tombstone.outcome, tombstone.error_text) == ("released", None, None)
    assert tombstone.generation == 0
    assert tombstone.kind == outcome.kind
    assert tombstone.payload_bytes == len(data)
    assert tombstone.payload_sha256 == hashlib.sha256(data).hexdigest()
    assert tombstone.recorded_at == retained.recorded_at
    assert tombstone.released_at is not None and tombstone.released_at.tzinfo is UTC
    assert tombstone.recorded_at is not None and tombstone.released_at >= tombstone.recorded_at


# -- 5. retained yielded -------------------------------------------------------------------


def test_release_of_a_yield_of_an_open_cell_is_not_releasable(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("partial")]))
    before = dump(store)
    with pytest.raises(NotReleasable):
        session.release("c", 0)
    assert dump(store) == before


def test_release_of_the_trailing_yield_of_a_closed_cell_leaves_a_tombstone(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.yielded([TextItem("a")]))
    session.begin("c", 1)
    session.record("c", 1, Outcome.yielded([TextItem("last")]))
    session.close_cell("c")

    assert session.release("c", 1) is True
    tombstone = session.get("c", 1)
    assert tombstone is not None
    assert (tombstone.state, tombstone.kind) == ("released", "yielded")
    assert stored(store, "payload", 1) is None
    assert session.release("c", 1) is False


def test_a_yield_recorded_after_close_cell_is_released_as_the_trailing_yield(session: StoreSession) -> None:
    session.begin("c", 0)
    session.close_cell("c")
    session.record("c", 0, Outcome.yielded([TextItem("late")]))
    assert session.release("c", 0) is True


# -- 6. retained missing -------------------------------------------------------------------


def test_release_of_a_missing_outcome_is_not_releasable(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.missing())
    before = dump(store)
    with pytest.raises(NotReleasable):
        session.release("c", 0)
    assert dump(store) == before


def test_release_of_a_missing_outcome_of_a_closed_cell_is_not_releasable(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.missing())
    session.close_cell("c")
    with pytest.raises(NotReleasable):
        session.release("c", 0)


# -- 7. already a tombstone ----------------------------------------------------------------


def test_a_repeated_release_succeeds_and_changes_nothing(
    store: ObservationStore, session: StoreSession
) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([TextItem("done")]))
    assert session.release("c", 0) is True
    before = dump(store)
    assert session.release("c", 0) is False
    assert dump(store) == before


@pytest.mark.parametrize("finish", ["yielded", "missing", "failed"])
def test_release_of_an_implicitly_acknowledged_generation_succeeds_and_changes_nothing(
    store: ObservationStore, session: StoreSession, finish: str
) -> None:
    session.begin("c", 0)
    if finish == "failed":
        session.fail("c", 0, "lost")
    else:
        session.record("c", 0, Outcome.yielded([]) if finish == "yielded" else Outcome.missing())
    session.begin("c", 1)
    before = dump(store)
    assert session.release("c", 0) is False
    assert dump(store) == before


# -- 8. True exactly once ---------------------------------------------------------------------


def test_release_returns_true_once_then_false(session: StoreSession) -> None:
    session.begin("c", 0)
    session.record("c", 0, Outcome.terminated([]))
    assert [session.release("c", 0) for _ in range(3)] == [True, False, False]


def test_concurrent_releases_all_succeed_and_exactly_one_drops_the_payload(store: ObservationStore) -> None:
    session = store.session("s")
    session.create_cell("c")
    session.begin("c", 0)
    session.record("c", 0, Outcome.completed([TextItem("x" * 1000)]))
    start = threading.Barrier(6)
    results: list[bool] = []
    errors: list[BaseException] = []

    def release() -> None:
        start.wait()
        try:
            results.append(store.session("s").release("c", 0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=release) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]


# -- the README states the acknowledgement contract -------------------------------------------


def test_the_readme_states_the_acknowledgement_contract_in_a_few_lines() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    heading = "## The acknowledgement contract"
    assert heading in readme
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    assert len(section.strip().splitlines()) <= 30, section
    flat = " ".join(section.split())
    for promise in (
        "byte for byte",  # replayed unchanged until acknowledged
        "asking for g+1",  # an acknowledgement is the next request ...
        "`release(cell, g)`",  # ... or a release
        "durably",  # Core acknowledges only after its own commit
        "returns `False`",  # a late or repeated acknowledgement is harmless
        "`AlreadyReleased`",  # a replay of a released generation, never a re-run
        "`UnknownCell`",  # an acknowledgement for a cell the store never saw
    ):
        assert promise in flat, promise
