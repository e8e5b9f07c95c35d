"""A stateful property test: the store against a small in-memory model of docs/protocol.md.

Hypothesis drives random operations on a few cells of two sessions (including
reopening the store mid-run) and every result and every error class must agree
with the model. The model is written from the spec, not from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from support.async_adapter import BlockingStore

from codemode_store import ImageItem, Observation, ObservationStore, Outcome, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    StoreError,
    UnknownCell,
)

T = TypeVar("T")

SESSIONS = ("s1", "s2")
CELLS = ("a", "b", "c")
OUTCOMES = (
    Outcome.yielded([TextItem("a")]),
    Outcome.yielded([TextItem("b"), ImageItem("data:image/png;base64,AA==", "low")]),
    Outcome.completed([TextItem("done")]),
    Outcome.completed([], error_text="Traceback"),
    Outcome.terminated([]),
    Outcome.missing(),
)
REQUESTS = (None, {"yield_time_ms": 1}, {"yield_time_ms": 2})
ERROR_TEXTS = ("lost", "runtime restarted")
# What a host answers to an observe request: mostly output that keeps the cell running.
HOST_ANSWERS = (*OUTCOMES[:2] * 3, Outcome.missing(), OUTCOMES[2], OUTCOMES[4], ERROR_TEXTS[0])

# Weighted towards the cells made at the start, so that runs go deep; "c" starts
# unknown and s2 is the session most often ended.
sessions = st.sampled_from(("s1", "s1", "s1", "s2"))
cells = st.sampled_from(("a", "a", "a", "b", "b", "c"))
ended_sessions = st.sampled_from(("s2", "s2", "s2", "s1"))
closed_cells = st.sampled_from(("b", "b", "c", "a"))
# Offsets from the model's next (begin) or last (other operations) generation:
# mostly the expected one, sometimes behind (replay, tombstones), sometimes ahead.
begin_offsets = st.sampled_from([0, -1, -1, -2, -3, 1])
last_offsets = st.sampled_from([0, 0, 0, -1, -2, 1])


# -- the model -------------------------------------------------------------------------


@dataclass
class ModelObservation:
    """One generation as the spec describes it."""

    state: str
    request: dict[str, Any] | None
    kind: str | None = None
    outcome: Outcome | None = None
    error_text: str | None = None


@dataclass
class ModelCell:
    """One cell: open or closed, and its generations."""

    closed: bool = False
    generations: dict[int, ModelObservation] = field(default_factory=dict)

    @property
    def last(self) -> int | None:
        return max(self.generations) if self.generations else None

    @property
    def next(self) -> int:
        return 0 if self.last is None else self.last + 1


class Model:
    """The rules of docs/protocol.md on dictionaries; each method returns a result or raises an error."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, ModelCell]] = {}

    def cell(self, session: str, cell: str) -> ModelCell:
        found = self.sessions.get(session, {}).get(cell)
        if found is None:
            raise UnknownCell("model")
        return found

    def create_cell(self, session: str, cell: str) -> None:
        if cell in self.sessions.get(session, {}):
            raise DuplicateCell("model")
        self.sessions.setdefault(session, {})[cell] = ModelCell()

    def begin(
        self, session: str, cell: str, g: int, request: dict[str, Any] | None
    ) -> ModelObservation | None:
        c = self.cell(session, cell)
        if g > c.next:
            raise FutureGeneration("model")
        if g == c.next:
            if c.closed:
                raise CellClosed("model")
            if g > 0:
                previous = c.generations[g - 1]
                if previous.state == "pending":
                    raise ObservationInProgress("model")
                _release(previous)
            c.generations[g] = ModelObservation("pending", request)
            return None
        o = c.generations[g]
        if o.state == "pending":
            raise ObservationInProgress("model")
        if o.state == "released":
            raise AlreadyReleased("model")
        if request is not None and o.request is not None and request != o.request:
            raise GenerationConflict("model")
        return o

    def record(self, session: str, cell: str, g: int, outcome: Outcome) -> None:
        c = self.cell(session, cell)
        o = c.generations.get(g)
        if o is not None and o.state == "pending":
            o.state, o.kind, o.outcome = "retained", outcome.kind, outcome
            if outcome.kind in ("completed", "terminated"):
                c.closed = True
            return
        if o is not None and o.state == "retained":
            if o.outcome == outcome:
                return
            raise GenerationConflict("model")
        raise NotPending("model")

    def fail(self, session: str, cell: str, g: int, error_text: str) -> None:
        c = self.cell(session, cell)
        o = c.generations.get(g)
        if o is None or o.state != "pending":
            raise NotPending("model")
        o.state, o.error_text = "failed", error_text

    def release(self, session: str, cell: str, g: int) -> bool:
        c = self.cell(session, cell)
        if c.last is None or g > c.last:
            raise FutureGeneration("model")
        o = c.generations[g]
        if o.state == "released":
            return False
        if o.state in ("pending", "failed"):
            raise NotReleasable("model")
        if o.kind in ("completed", "terminated") or (o.kind == "yielded" and c.closed and g == c.last):
            _release(o)
            return True
        raise NotReleasable("model")

    def close_cell(self, session: str, cell: str) -> None:
        self.cell(session, cell).closed = True

    def get(self, session: str, cell: str, g: int) -> ModelObservation | None:
        return self.cell(session, cell).generations.get(g)

    def history(self, session: str, cell: str) -> list[tuple[int, ModelObservation]]:
        return sorted(self.cell(session, cell).generations.items())

    def pending(self) -> list[tuple[str, str, int]]:
        return sorted(
            (s, c, g)
            for s, session_cells in self.sessions.items()
            for c, model_cell in session_cells.items()
            for g, o in model_cell.generations.items()
            if o.state == "pending"
        )

    def fail_pending(self, error_text: str) -> int:
        count = 0
        for session_cells in self.sessions.values():
            for model_cell in session_cells.values():
                for o in model_cell.generations.values():
                    if o.state == "pending":
                        o.state, o.error_text = "failed", error_text
                        count += 1
        return count

    def end_session(self, session: str) -> int:
        removed = self.sessions.pop(session, {})
        return sum(len(c.generations) for c in removed.values())


def _release(o: ModelObservation) -> None:
    if o.state in ("retained", "failed"):
        o.state, o.outcome, o.error_text = "released", None, None


# -- the machine -------------------------------------------------------------------------


class StoreMachine(RuleBasedStateMachine):
    """Run each operation on the store and on the model; they must agree."""

    url: str = ""
    #: The front end under test: ``ObservationStore``, or ``BlockingStore`` for the asyncio one.
    store_class: Any = ObservationStore

    def __init__(self) -> None:
        super().__init__()
        self.store = self.store_class.open(self.url)
        # Examples share one database: start each from an empty one.
        for session in SESSIONS:
            self.store.end_session(session)
        assert self.store.cells() == []
        self.model = Model()

    def teardown(self) -> None:
        try:
            self.compare_everything()
            for session in SESSIONS:
                assert self.store.end_session(session) == self.model.end_session(session)
            assert self.store.cells() == []
        finally:
            self.store.close()

    # -- comparing ---------------------------------------------------------------------

    def agree(
        self,
        actual: Callable[[], T],
        expected: Callable[[], Any],
        key: tuple[str | None, str | None, int | None] = (None, None, None),
    ) -> tuple[T, Any] | None:
        """Run both sides; return both results, or None when both raised the same error."""
        try:
            wanted = expected()
        except StoreError as exc:
            wanted_error: StoreError | None = exc
        else:
            wanted_error = None
        try:
            result = actual()
        except StoreError as exc:
            assert wanted_error is not None, f"store raised {exc!r}, model returned {wanted!r}"
            assert type(exc) is type(wanted_error), f"store raised {exc!r}, model {wanted_error!r}"
            assert (exc.session_id, exc.cell_id, exc.generation) == key
            return None
        assert wanted_error is None, f"store returned {result!r}, model raised {wanted_error!r}"
        return result, wanted

    def same_observation(
        self, actual: Observation | None, session: str, cell: str, g: int, wanted: ModelObservation | None
    ) -> None:
        if wanted is None:
            assert actual is None
            return
        assert actual is not None
        assert (actual.session_id, actual.cell_id, actual.generation) == (session, cell, g)
        assert (actual.state, actual.kind, actual.outcome, actual.error_text) == (
            wanted.state,
            wanted.kind,
            wanted.outcome,
            wanted.error_text,
        )
        has_payload_info = wanted.state != "pending"
        assert (actual.payload_bytes is not None) == has_payload_info
        assert (actual.payload_sha256 is not None) == has_payload_info
        assert (actual.recorded_at is not None) == has_payload_info
        assert (actual.released_at is not None) == (wanted.state == "released")

    def compare_everything(self) -> None:
        for session in SESSIONS:
            for cell in CELLS:
                self.history(session, cell)
            self.cells(session)
        self.pending()

    def next_generation(self, session: str, cell: str, offset: int) -> int:
        found = self.model.sessions.get(session, {}).get(cell)
        return max(0, (found.next if found else 0) + offset)

    def last_generation(self, session: str, cell: str, offset: int) -> int:
        found = self.model.sessions.get(session, {}).get(cell)
        last = found.last if found and found.last is not None else 0
        return max(0, last + offset)

    # -- rules -----------------------------------------------------------------------------

    @initialize()
    def create_first_cells(self) -> None:
        for session, cell in (("s1", "a"), ("s1", "b"), ("s2", "a")):
            self.store.session(session).create_cell(cell)
            self.model.create_cell(session, cell)

    @rule(session=sessions, cell=cells)
    def create_cell(self, session: str, cell: str) -> None:
        self.agree(
            lambda: self.store.session(session).create_cell(cell),
            lambda: self.model.create_cell(session, cell),
            (session, cell, None),
        )

    @rule(session=sessions, cell=cells, offset=begin_offsets, request=st.sampled_from(REQUESTS))
    def begin(self, session: str, cell: str, offset: int, request: dict[str, Any] | None) -> None:
        self.run_begin(session, cell, self.next_generation(session, cell, offset), request)

    def run_begin(self, session: str, cell: str, g: int, request: dict[str, Any] | None) -> bool:
        """Begin ``g`` on both sides; tell whether it was accepted."""
        both = self.agree(
            lambda: self.store.session(session).begin(cell, g, request),
            lambda: self.model.begin(session, cell, g, request),
            (session, cell, g),
        )
        if both is None:
            return False
        self.same_observation(both[0], session, cell, g, both[1])
        return True

    @rule(
        session=sessions,
        cell=cells,
        offset=last_offsets,
        outcome=st.sampled_from(OUTCOMES),
        same_as_stored=st.booleans(),
        as_wire=st.booleans(),
    )
    def record(
        self, session: str, cell: str, offset: int, outcome: Outcome, same_as_stored: bool, as_wire: bool
    ) -> None:
        g = self.last_generation(session, cell, offset)
        found = self.model.sessions.get(session, {}).get(cell)
        stored = found.generations.get(g) if found else None
        if same_as_stored and stored is not None and stored.outcome is not None:
            outcome = stored.outcome
        argument: Outcome | dict[str, Any] = outcome.to_wire(cell) if as_wire else outcome
        self.agree(
            lambda: self.store.session(session).record(cell, g, argument),
            lambda: self.model.record(session, cell, g, outcome),
            (session, cell, g),
        )

    @rule(session=sessions, cell=cells, offset=last_offsets, error_text=st.sampled_from(ERROR_TEXTS))
    def fail(self, session: str, cell: str, offset: int, error_text: str) -> None:
        g = self.last_generation(session, cell, offset)
        self.agree(
            lambda: self.store.session(session).fail(cell, g, error_text),
            lambda: self.model.fail(session, cell, g, error_text),
            (session, cell, g),
        )

    @rule(
        session=sessions,
        cell=cells,
        request=st.sampled_from(REQUESTS),
        answers=st.lists(st.sampled_from(HOST_ANSWERS), min_size=1, max_size=4),
        stop=st.sampled_from([False, False, True]),
        acknowledge=st.booleans(),
    )
    def observe(
        self,
        session: str,
        cell: str,
        request: dict[str, Any] | None,
        answers: list[Outcome | str],
        stop: bool,
        acknowledge: bool,
    ) -> None:
        """Play a host and its Core: observe a few generations, maybe stop the cell, acknowledge."""
        for answer in answers:
            if not self.run_begin(session, cell, self.next_generation(session, cell, 0), request):
                break
            if isinstance(answer, str):
                self.fail(session, cell, 0, answer)
            else:
                self.record(session, cell, 0, answer, same_as_stored=False, as_wire=False)
        if stop:
            self.close_cell(session, cell)
        if acknowledge:
            self.release(session, cell, 0)

    @rule(session=sessions, cell=cells, offset=last_offsets)
    def release(self, session: str, cell: str, offset: int) -> None:
        g = self.last_generation(session, cell, offset)
        both = self.agree(
            lambda: self.store.session(session).release(cell, g),
            lambda: self.model.release(session, cell, g),
            (session, cell, g),
        )
        if both is not None:
            assert both[0] is both[1]

    @rule(session=sessions, cell=closed_cells)
    def close_cell(self, session: str, cell: str) -> None:
        self.agree(
            lambda: self.store.session(session).close_cell(cell),
            lambda: self.model.close_cell(session, cell),
            (session, cell, None),
        )

    @rule(session=sessions, cell=cells, offset=last_offsets)
    def get(self, session: str, cell: str, offset: int) -> None:
        g = self.last_generation(session, cell, offset)
        both = self.agree(
            lambda: self.store.session(session).get(cell, g),
            lambda: self.model.get(session, cell, g),
            (session, cell, g),
        )
        if both is not None:
            self.same_observation(both[0], session, cell, g, both[1])

    @rule()
    def inspect(self) -> None:
        self.compare_everything()

    def history(self, session: str, cell: str) -> None:
        both = self.agree(
            lambda: self.store.session(session).history(cell),
            lambda: self.model.history(session, cell),
            (session, cell, None),
        )
        if both is not None:
            actual, wanted = both
            assert [o.generation for o in actual] == [g for g, _ in wanted]
            for observation, (g, model_observation) in zip(actual, wanted, strict=True):
                self.same_observation(observation, session, cell, g, model_observation)

    def cells(self, session: str) -> None:
        actual = {
            x.cell_id: (x.closed, x.last_generation, x.last_state, x.last_kind, x.observations)
            for x in self.store.cells(session)
        }
        wanted = {}
        for cell, model_cell in self.model.sessions.get(session, {}).items():
            last = model_cell.last
            top = None if last is None else model_cell.generations[last]
            wanted[cell] = (
                model_cell.closed,
                last,
                None if top is None else top.state,
                None if top is None else top.kind,
                len(model_cell.generations),
            )
        assert actual == wanted

    def pending(self) -> None:
        actual = [(o.session_id, o.cell_id, o.generation) for o in self.store.pending()]
        assert actual == self.model.pending()

    @rule(error_text=st.sampled_from(ERROR_TEXTS))
    def fail_pending(self, error_text: str) -> None:
        assert self.store.fail_pending(error_text) == self.model.fail_pending(error_text)

    @rule(session=ended_sessions)
    def end_session(self, session: str) -> None:
        assert self.store.end_session(session) == self.model.end_session(session)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.store_class.open(self.url)


def test_store_agrees_with_the_model_of_section_3(store_url: str) -> None:
    class Machine(StoreMachine):
        url = store_url

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=200,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_async_store_agrees_with_the_model_of_section_3(store_url: str) -> None:
    class Machine(StoreMachine):
        url = store_url
        store_class = BlockingStore

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
