"""Group commit on SQLite (SPEC §6): writes that wait share one commit, each all or nothing.

Batches are made for real: a *plug* (a write that holds the store's commit
until the test lets it go) keeps the queue's leader busy while each test
thread queues its write in a known order; then the plug goes and the queued
writes are committed together. Each batch's answers are compared with the
same calls made one at a time (on a second store, or the model of
tests/test_stateful.py): a rule error in one write never changes another's
result or what is stored. Nothing is mocked: the failures are the
database's own (a deferred foreign key that fails the COMMIT, a statement
that fails inside one write).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from test_stateful import ERROR_TEXTS, OUTCOMES, REQUESTS, Model, ModelObservation

from codemode_store import Observation, ObservationStore, Outcome, TextItem
from codemode_store import calls as prepared
from codemode_store.aio import AsyncObservationStore
from codemode_store.calls import Op
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    DatabaseError,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    StoreError,
    UnknownCell,
)

LIMIT = 1 << 20
DONE = Outcome.completed([TextItem("done")])
PARTIAL = Outcome.yielded([TextItem("partial")])


def _queued(store: ObservationStore) -> int:
    group = store._group
    assert group is not None
    return len(group._queue)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


class Batch:
    """Queue writes behind a plug, in order, each from a thread of its own; then let them commit."""

    def __init__(self, store: ObservationStore) -> None:
        self.store = store
        self.results: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._gate = threading.Event()
        self._entered = threading.Event()

        def hold(_db: Any, _now: int) -> None:
            self._entered.set()
            self._gate.wait(30)

        plug = threading.Thread(target=store.run, args=(Op(hold, None, True, 0, ()),))
        plug.start()
        self._threads.append(plug)
        self._entered.wait(30)

    def add(self, call: Op[Any]) -> None:
        """Queue ``call`` behind the writes added before it."""
        index = len(self.results)
        self.results.append(None)
        before = _queued(self.store)

        def run() -> None:
            try:
                self.results[index] = ("ok", self.store.run(call))
            except BaseException as exc:
                self.results[index] = ("error", exc)

        thread = threading.Thread(target=run)
        thread.start()
        self._threads.append(thread)
        _wait_until(lambda: _queued(self.store) == before + 1, "the write is queued")

    def commit(self) -> list[Any]:
        """Let the plug go; return each queued write's ("ok", result) or ("error", exception)."""
        self._gate.set()
        for thread in self._threads:
            thread.join(30)
        return self.results


def _serially(store: ObservationStore, calls: list[Op[Any]]) -> list[Any]:
    results: list[Any] = []
    for call in calls:
        try:
            results.append(("ok", store.run(call)))
        except StoreError as exc:
            results.append(("error", exc))
    return results


def _comparable(result: Any) -> Any:
    """Return an answer without its times (a batch commits at other moments than a serial run)."""
    status, value = result
    if status == "error":
        return status, type(value), value.session_id, value.cell_id, value.generation
    if isinstance(value, Observation):
        return status, (value.state, value.kind, value.outcome, value.error_text, value.payload_sha256)
    return status, value


def _contents(store: ObservationStore) -> list[Any]:
    rows = []
    for cell in store.cells():
        s = store.session(cell.session_id)
        history = [(o.generation, o.state, o.kind, o.payload_sha256) for o in s.history(cell.cell_id)]
        rows.append((cell.session_id, cell.cell_id, cell.closed, history))
    return sorted(rows)


def _setup(store: ObservationStore) -> None:
    """Cells in every state the batch below needs."""
    s = store.session("s")
    for cell in ("open", "closed", "released", "yielding"):
        s.create_cell(cell)
    s.begin("open", 0)  # pending
    s.begin("closed", 0)
    s.record("closed", 0, DONE)  # retained, cell closed
    s.begin("released", 0)
    s.record("released", 0, PARTIAL)
    s.begin("released", 1)  # 0 released implicitly, 1 pending
    s.begin("yielding", 0)
    s.record("yielding", 0, PARTIAL)  # retained yielded: not releasable


def _mixed_batch() -> list[Op[Any]]:
    """Every rule error of §3 (each after a write it could be confused with), and successes."""
    s = "s"
    return [
        prepared.create_cell(s, "new"),  # ok
        prepared.create_cell(s, "new"),  # DuplicateCell (on the write just before, in the batch)
        prepared.begin(s, "nowhere", 0, None),  # UnknownCell
        prepared.begin(s, "new", 0, {"yield_time_ms": 1}),  # ok
        prepared.begin(s, "new", 0, {"yield_time_ms": 1}),  # ObservationInProgress
        prepared.begin(s, "new", 5, None),  # FutureGeneration
        prepared.record(s, "new", 0, PARTIAL, LIMIT),  # ok
        prepared.record(s, "new", 0, DONE, LIMIT),  # GenerationConflict
        prepared.release(s, "new", 0),  # NotReleasable (yielded, cell open)
        prepared.begin(s, "closed", 1, None),  # CellClosed
        prepared.begin(s, "released", 0, None),  # AlreadyReleased
        prepared.fail(s, "closed", 0, "late", LIMIT),  # NotPending
        prepared.record(s, "open", 0, DONE, LIMIT),  # ok: closes "open"
        prepared.release(s, "open", 0),  # ok
        prepared.release(s, "yielding", 0),  # NotReleasable
        prepared.fail(s, "released", 1, "lost", LIMIT),  # ok
        prepared.begin(s, "new", 1, None),  # ok: releases 0
        prepared.close_cell(s, "nowhere"),  # UnknownCell
        prepared.close_cell(s, "new"),  # ok
    ]


EXPECTED_ERRORS = [
    None,
    DuplicateCell,
    UnknownCell,
    None,
    ObservationInProgress,
    FutureGeneration,
    None,
    GenerationConflict,
    NotReleasable,
    CellClosed,
    AlreadyReleased,
    NotPending,
    None,
    None,
    NotReleasable,
    None,
    None,
    UnknownCell,
    None,
]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ObservationStore, ObservationStore]]:
    with (
        ObservationStore.open(tmp_path / "batched.db") as batched,
        ObservationStore.open(tmp_path / "serial.db") as serial,
    ):
        yield batched, serial


def test_a_batch_mixing_every_rule_error_with_successes_answers_as_one_call_at_a_time(
    stores: tuple[ObservationStore, ObservationStore],
) -> None:
    batched, serial = stores
    _setup(batched)
    _setup(serial)
    assert batched._group is not None
    commits = batched._group.figures.commits

    batch = Batch(batched)
    for call in _mixed_batch():
        batch.add(call)
    results = batch.commit()
    expected = _serially(serial, _mixed_batch())

    assert [type(value) if status == "error" else None for status, value in results] == EXPECTED_ERRORS
    assert [_comparable(r) for r in results] == [_comparable(r) for r in expected]
    assert _contents(batched) == _contents(serial)
    # The plug's commit and one more for the whole batch (the leader may take
    # the batch into the plug's own commit: then one).
    assert batched._group.figures.commits - commits <= 2
    assert batched._group.figures.largest >= len(EXPECTED_ERRORS)


def test_the_writes_that_failed_a_rule_leave_the_others_exactly_as_without_them(
    stores: tuple[ObservationStore, ObservationStore],
) -> None:
    with_errors, without = stores
    _setup(with_errors)
    _setup(without)
    mixed = _mixed_batch()
    batch = Batch(with_errors)
    for call in mixed:
        batch.add(call)
    results = batch.commit()

    successes = [call for call, error in zip(_mixed_batch(), EXPECTED_ERRORS, strict=True) if error is None]
    clean = Batch(without)
    for call in successes:
        clean.add(call)
    clean_results = clean.commit()

    kept = [_comparable(r) for r, error in zip(results, EXPECTED_ERRORS, strict=True) if error is None]
    assert kept == [_comparable(r) for r in clean_results]
    assert _contents(with_errors) == _contents(without)


def _deferred_violation(db: Any, _now: int) -> None:
    """Write a row whose foreign key fails only at COMMIT (the check deferred to the end)."""
    cursor = db.dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA defer_foreign_keys = ON")
        cursor.execute(
            "INSERT INTO observations (session_id, cell_id, generation, state, begun_at) "
            "VALUES ('ghost', 'ghost', 0, 'pending', 0)"
        )
    finally:
        cursor.close()


def test_a_failed_commit_fails_every_write_of_its_batch_and_acknowledges_none(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "store.db") as store:
        store.session("s").create_cell("kept")
        before = _contents(store)
        batch = Batch(store)
        batch.add(prepared.create_cell("s", "a"))
        batch.add(prepared.begin("s", "kept", 0, None))
        batch.add(Op(_deferred_violation, None, True, 0, ()))
        batch.add(prepared.create_cell("s", "kept"))  # a rule error, in a batch that fails
        batch.add(prepared.create_cell("s", "b"))
        results = batch.commit()

        assert [status for status, _ in results] == ["error"] * 5
        for (_status, error), key in zip(
            results,
            [("s", "a", None), ("s", "kept", 0), (None, None, None), ("s", "kept", None), ("s", "b", None)],
            strict=True,
        ):
            assert isinstance(error, DatabaseError), error
            assert "FOREIGN KEY constraint failed" in str(error)
            assert (error.session_id, error.cell_id, error.generation) == key
        assert _contents(store) == before  # nothing of the batch is in the store
        # The store goes on: the same writes, without the bad one, commit.
        store.session("s").create_cell("a")
        assert store.session("s").begin("kept", 0) is None


def _bad_statement(db: Any, _now: int) -> None:
    cursor = db.dbapi_connection.cursor()
    try:
        cursor.execute("UPDATE no_such_table SET x = 1")
    finally:
        cursor.close()


def test_a_driver_error_in_one_write_fails_it_alone(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "store.db") as store:
        batch = Batch(store)
        batch.add(prepared.create_cell("s", "a"))
        batch.add(Op(_bad_statement, None, True, 0, ()))
        batch.add(prepared.create_cell("s", "b"))
        batch.add(prepared.create_cell("s", "a"))
        results = batch.commit()
        statuses = [(status, type(value)) for status, value in results]
        assert statuses[0] == ("ok", type(None))
        assert statuses[1][0] == "error" and issubclass(statuses[1][1], StoreError)
        assert "no such table" in str(results[1][1])
        assert statuses[2:] == [("ok", type(None)), ("error", DuplicateCell)]
        assert [c.cell_id for c in store.cells("s")] == ["a", "b"]


def test_an_interrupted_leader_hands_its_batch_on_and_nothing_is_lost(tmp_path: Path) -> None:
    def interrupt(_db: Any, _now: int) -> None:
        raise KeyboardInterrupt

    with ObservationStore.open(tmp_path / "store.db") as store:
        batch = Batch(store)
        batch.add(Op(interrupt, None, True, 0, ()))  # the leader after the plug runs this first
        for cell in ("a", "b", "c"):
            batch.add(prepared.create_cell("s", cell))
        results = batch.commit()
        assert results[0][0] == "error" and isinstance(results[0][1], KeyboardInterrupt)
        assert results[1:] == [("ok", None)] * 3
        assert [c.cell_id for c in store.cells("s")] == ["a", "b", "c"]


def _host_loop(store: ObservationStore, session_id: str, cells: int) -> None:
    s = store.session(session_id)
    for n in range(cells):
        cell = f"cell-{n}"
        s.create_cell(cell)
        assert s.begin(cell, 0) is None
        s.record(cell, 0, PARTIAL)
        assert s.begin(cell, 1) is None
        s.record(cell, 1, DONE)
        assert s.release(cell, 1) is True


@pytest.mark.parametrize("sessions", [16, 64, 256])
def test_many_sessions_of_one_process_finish_without_busy_errors(tmp_path: Path, sessions: int) -> None:
    """Each thread's writes wait in the store's queue, never in SQLite's busy handler (which is 0 s here)."""
    with ObservationStore.open(tmp_path / "store.db", busy_timeout=0) as store:
        errors: list[BaseException] = []
        barrier = threading.Barrier(sessions)

        def host(index: int) -> None:
            barrier.wait()
            try:
                _host_loop(store, f"session-{index}", 2)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=host, args=(n,)) for n in range(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store._group is not None
        assert store._group.figures.largest > 1  # writes did share commits
        summaries = store.cells()
        assert len(summaries) == 2 * sessions
        assert all(c.closed and c.last_state == "released" for c in summaries)


def _store_threads() -> int:
    """Count the threads besides the loop's executor (which ``record`` uses to encode payloads)."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith("asyncio_"))


@pytest.mark.parametrize("tasks", [16, 64])
def test_asyncio_tasks_share_commits_without_a_thread_each(tmp_path: Path, tasks: int) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncObservationStore.open(tmp_path / "store.db") as store:
            threads_before = _store_threads()
            most = threads_before

            async def host(index: int) -> None:
                nonlocal most
                s = store.session(f"task-{index}")
                for n in range(2):
                    cell = f"cell-{n}"
                    await s.create_cell(cell)
                    assert await s.begin(cell, 0) is None
                    await s.record(cell, 0, DONE)
                    most = max(most, _store_threads())
                    assert await s.release(cell, 0) is True

            await asyncio.gather(*(host(n) for n in range(tasks)))
            assert store._group is not None
            largest = store._group.figures.largest
            summaries = await store.cells()
            assert len(summaries) == 2 * tasks
            assert all(c.closed and c.last_state == "released" for c in summaries)
            return largest, most - threads_before

    largest, extra_threads = asyncio.run(main())
    assert largest > 1
    # aiosqlite runs a thread per connection (the writes' one, a reader's), never one per waiting task.
    assert extra_threads <= 3, extra_threads


# -- many threads against the model, a batch at a time ------------------------------------------------


SESSIONS = ("s1", "s2")
CELLS = ("a", "b")
ACTIONS = ("create", "begin", "begin", "record", "record", "fail", "release", "close", "end")


class BatchMachine(RuleBasedStateMachine):
    """Each step queues a few writes of random threads into one batch; the model runs them in queue order."""

    path: Path = Path()

    def __init__(self) -> None:
        super().__init__()
        self.store = ObservationStore.open(self.path)
        for session in SESSIONS:
            self.store.end_session(session)
        self.model = Model()

    def teardown(self) -> None:
        try:
            for session in SESSIONS:
                for cell in CELLS:
                    self.compare_history(session, cell)
        finally:
            self.store.close()

    def compare_history(self, session: str, cell: str) -> None:
        try:
            wanted = self.model.history(session, cell)
        except UnknownCell:
            with pytest.raises(UnknownCell):
                self.store.session(session).history(cell)
            return
        actual = self.store.session(session).history(cell)
        assert [(o.generation, o.state, o.kind, o.outcome, o.error_text) for o in actual] == [
            (g, o.state, o.kind, o.outcome, o.error_text) for g, o in wanted
        ]

    def generation(self, session: str, cell: str, offset: int, after_last: bool) -> int:
        found = self.model.sessions.get(session, {}).get(cell)
        if found is None:
            return max(0, offset)
        base = found.next if after_last else (found.last or 0)
        return max(0, base + offset)

    def prepare(self, draw: tuple[Any, ...]) -> tuple[Op[Any], Callable[[], Any]]:
        """Return the store's call and the model's for one drawn write (generations from the model now)."""
        action, session, cell, offset, outcome, request, text = draw
        m = self.model
        if action == "create":
            return prepared.create_cell(session, cell), lambda: m.create_cell(session, cell)
        if action == "begin":
            g = self.generation(session, cell, offset, True)
            return prepared.begin(session, cell, g, request), lambda: m.begin(session, cell, g, request)
        g = self.generation(session, cell, offset, False)
        if action == "record":
            call = prepared.record(session, cell, g, outcome, LIMIT)
            return call, lambda: m.record(session, cell, g, outcome)
        if action == "fail":
            return prepared.fail(session, cell, g, text, LIMIT), lambda: m.fail(session, cell, g, text)
        if action == "release":
            return prepared.release(session, cell, g), lambda: m.release(session, cell, g)
        if action == "close":
            return prepared.close_cell(session, cell), lambda: m.close_cell(session, cell)
        return prepared.end_session(session), lambda: m.end_session(session)

    @rule(
        writes=st.lists(
            st.tuples(
                st.sampled_from(
                    ["create", "begin", "begin", "record", "record", "fail", "release", "close", "end"]
                ),
                st.sampled_from(SESSIONS),
                st.sampled_from(CELLS),
                st.sampled_from([0, 0, 0, -1, 1]),
                st.sampled_from(OUTCOMES),
                st.sampled_from(REQUESTS),
                st.sampled_from(ERROR_TEXTS),
            ),
            min_size=2,
            max_size=8,
        )
    )
    def batch(self, writes: list[tuple[Any, ...]]) -> None:
        prepared_writes = [self.prepare(draw) for draw in writes]
        batch = Batch(self.store)
        for call, _model in prepared_writes:
            batch.add(call)
        results = batch.commit()
        for (status, value), (_call, model_call) in zip(results, prepared_writes, strict=True):
            try:
                wanted: Any = model_call()
            except StoreError as exc:
                assert status == "error" and type(value) is type(exc), (value, exc)
                continue
            assert status == "ok", value
            if isinstance(wanted, ModelObservation):
                assert (value.state, value.kind, value.outcome) == (wanted.state, wanted.kind, wanted.outcome)
            else:
                assert value == wanted

    @rule(session=st.sampled_from(SESSIONS), cell=st.sampled_from(CELLS))
    def history(self, session: str, cell: str) -> None:
        self.compare_history(session, cell)


def test_batches_of_many_threads_agree_with_the_model(tmp_path: Path) -> None:
    class Machine(BatchMachine):
        path = tmp_path / "store.db"

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class _Interrupted(Exception):
    """What the test's SIGINT handler raises in the main thread."""


def test_a_follower_interrupted_while_it_waits_leaves_the_queue_and_nothing_stalls(tmp_path: Path) -> None:
    """Ctrl-C in a thread that waits for its commit: its write never runs, the writers behind it go on."""
    with ObservationStore.open(tmp_path / "store.db") as store:
        batch = Batch(store)  # the plug holds the lead
        batch.add(prepared.create_cell("s", "before"))

        def interrupt_main_thread_once_queued() -> None:
            _wait_until(lambda: _queued(store) == 2, "the main thread's write is queued")
            batch.add(prepared.create_cell("s", "after"))  # behind the main thread's write
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        def on_sigint(_signum: int, _frame: Any) -> None:
            raise _Interrupted

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            threading.Thread(target=interrupt_main_thread_once_queued).start()
            with pytest.raises(_Interrupted):
                store.run(prepared.create_cell("s", "interrupted"))
        finally:
            signal.signal(signal.SIGINT, previous)
        assert batch.commit() == [("ok", None), ("ok", None)]
        assert sorted(c.cell_id for c in store.cells("s")) == ["after", "before"]
        store.session("s").create_cell("later")  # the queue is free


# -- PostgreSQL: no group commit, and the pool does not hold sessions back ----------------------------


@pytest.mark.postgres
def test_twenty_sessions_on_postgresql_hold_transactions_side_by_side(postgres_url: str) -> None:
    """Twenty threads are inside a transaction at once: neither a queue nor the pool serialises them."""
    threads_at_once = 20
    barrier = threading.Barrier(threads_at_once, timeout=20)
    errors: list[BaseException] = []
    with ObservationStore.open(postgres_url) as store:
        assert store._group is None  # the server groups commits itself

        def inside_a_transaction(_conn: Any) -> None:
            barrier.wait()  # only returns once every thread holds a connection in a transaction

        def session(index: int) -> None:
            try:
                store.write(inside_a_transaction, session_id=f"s{index}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=session, args=(n,)) for n in range(threads_at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
