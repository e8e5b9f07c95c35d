"""``AsyncStoreSession.observe``: async and sync ``run``, failures, cancellation, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from codemode_store import Outcome, TextItem
from codemode_store.aio import AsyncObservationStore, AsyncStoreSession
from codemode_store.calls import Call
from codemode_store.errors import GenerationConflict, InvalidInput
from codemode_store.observe import CANCELLED_TEXT

T = TypeVar("T")

Scenario = Callable[[AsyncObservationStore, AsyncStoreSession], Awaitable[T]]


def on_store(store_url: str, scenario: Scenario[T]) -> T:
    """Run ``scenario`` on a fresh async store with a session ``s`` holding an open cell ``c``."""

    async def main() -> T:
        async with AsyncObservationStore.open(store_url) as store:
            session = store.session("s")
            await session.create_cell("c")
            return await scenario(store, session)

    return asyncio.run(main())


async def never() -> Outcome:
    raise AssertionError("run was called for a generation that must not run")


def test_an_async_run_is_awaited_recorded_and_returned_as_stored(store_url: str) -> None:
    calls: list[int] = []

    async def run() -> Outcome:
        calls.append(1)
        await asyncio.sleep(0)
        return Outcome.yielded([TextItem("partial")])

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        observation = await s.observe("c", 0, run, request={"yield_time_ms": 10})
        assert calls == [1]
        assert (observation.state, observation.kind) == ("retained", "yielded")
        assert observation == await s.get("c", 0)
        assert await s.observe("c", 0, never, request={"yield_time_ms": 10}) == observation
        with pytest.raises(GenerationConflict):
            await s.observe("c", 0, never, request={"yield_time_ms": 11})

    on_store(store_url, scenario)


def test_a_sync_run_and_a_wire_object_do_too(store_url: str) -> None:
    wire = {"type": "completed", "cell_id": "c", "content_items": [], "error_text": "exit status 1"}

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        observation = await s.observe("c", 0, lambda: wire)
        assert observation.outcome == Outcome.from_wire(wire)
        assert observation == await s.get("c", 0)

    on_store(store_url, scenario)


def test_an_exception_of_an_async_run_fails_the_generation(store_url: str) -> None:
    async def run() -> Outcome:
        await asyncio.sleep(0)
        raise OSError("no such file")

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        failed = await s.observe("c", 0, run)
        assert (failed.state, failed.error_text) == ("failed", "OSError: no such file")
        assert failed == await s.get("c", 0)
        assert await store.pending() == []
        assert await s.observe("c", 0, never) == failed

    on_store(store_url, scenario)


@pytest.mark.parametrize("result", [42, Outcome], ids=["int", "class"])
def test_a_run_returning_no_outcome_fails_the_generation_and_raises(store_url: str, result: Any) -> None:
    async def run() -> Any:
        return result

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        with pytest.raises(InvalidInput) as raised:
            await s.observe("c", 0, run)
        failed = await s.get("c", 0)
        assert failed is not None and failed.error_text == f"InvalidInput: {raised.value}"
        assert await store.pending() == []

    on_store(store_url, scenario)


def test_a_cancelled_run_fails_the_generation_as_cancelled_and_the_cancellation_goes_on(
    store_url: str,
) -> None:
    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        started = asyncio.Event()

        async def run() -> Outcome:
            started.set()
            await asyncio.Event().wait()  # a cell that runs until it is stopped
            raise AssertionError("not reached")

        task = asyncio.create_task(s.observe("c", 0, run))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        failed = await s.get("c", 0)
        assert failed is not None and (failed.state, failed.error_text) == ("failed", CANCELLED_TEXT)
        assert await store.pending() == []

    on_store(store_url, scenario)


def test_a_timeout_around_observe_fails_the_generation_as_cancelled(store_url: str) -> None:
    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:

                async def run() -> Outcome:
                    # The deadline starts once the cell runs, so a slow begin cannot use it up.
                    deadline.reschedule(asyncio.get_running_loop().time() + 0.05)
                    await asyncio.sleep(60)
                    return Outcome.yielded([])

                await s.observe("c", 0, run)
        failed = await s.get("c", 0)
        assert failed is not None and failed.error_text == CANCELLED_TEXT

    on_store(store_url, scenario)


def test_cancelled_again_while_failing_it_still_leaves_nothing_pending(store_url: str) -> None:
    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        started = asyncio.Event()

        async def run() -> Outcome:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("not reached")

        task = asyncio.create_task(s.observe("c", 0, run))
        await started.wait()
        task.cancel()
        await asyncio.sleep(0)  # observe catches it and starts failing the generation
        task.cancel()  # and is cancelled again meanwhile
        with pytest.raises(asyncio.CancelledError):
            await task
        # The shielded fail finishes on its own.
        for _ in range(500):
            if not await store.pending():
                break
            await asyncio.sleep(0.01)
        failed = await s.get("c", 0)
        assert failed is not None and (failed.state, failed.error_text) == ("failed", CANCELLED_TEXT)

    on_store(store_url, scenario)


def test_a_cancellation_at_any_step_leaves_nothing_pending(store_url: str) -> None:
    outcome = Outcome.yielded([TextItem("x" * 200_000)])

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        ends: list[str] = []
        for step in range(40):
            cell = f"c{step}"
            await s.create_cell(cell)
            task = asyncio.create_task(s.observe(cell, 0, lambda: outcome))
            await asyncio.sleep(step * 0.001)  # observe goes on a while: begin, run, record
            task.cancel()
            try:
                observation = await task
            except asyncio.CancelledError:
                observation = None
            # What goes on after the cancellation (a shielded begin, a fail) finishes on its own.
            for _ in range(1000):
                if not await store.pending():
                    break
                await asyncio.sleep(0.01)
            assert await store.pending() == [], f"cancelled after {step} steps"
            stored = await s.get(cell, 0)
            if observation is not None:
                assert observation == stored
            if stored is not None:
                assert stored.state == "retained" or stored.error_text == CANCELLED_TEXT, stored
                ends.append(stored.state)
            else:
                ends.append("not begun")
        # The cancellations did land both before the record and after it.
        assert {"failed", "retained"} <= set(ends), ends

    on_store(store_url, scenario)


def test_cancelled_while_failing_an_exception_still_fails_the_generation(store_url: str) -> None:
    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        tasks: list[asyncio.Task[Any]] = []

        async def run() -> Outcome:
            # The cancellation lands while observe is failing the generation.
            asyncio.get_running_loop().call_soon(tasks[0].cancel)
            raise ValueError("boom")

        tasks.append(asyncio.create_task(s.observe("c", 0, run)))
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        for _ in range(500):
            if not await store.pending():
                break
            await asyncio.sleep(0.01)
        failed = await s.get("c", 0)
        assert failed is not None and (failed.state, failed.error_text) == ("failed", "ValueError: boom")

    on_store(store_url, scenario)


class SlowToAnswer(AsyncObservationStore):
    """A real async store that, after a write commits, takes a while to hand back the result."""

    committed: asyncio.Event | None = None

    async def run(self, call: Call[T]) -> T:
        result = await super().run(call)
        if call.writes and self.committed is not None:
            self.committed.set()
            await asyncio.sleep(0.5)
        return result


def test_a_cancellation_between_begins_commit_and_its_return_fails_the_generation(store_url: str) -> None:
    async def never_run() -> Outcome:
        raise AssertionError("the cancelled observe must not run the cell")

    async def main() -> None:
        async with SlowToAnswer.open(store_url) as store:
            assert isinstance(store, SlowToAnswer)
            s = store.session("s")
            await s.create_cell("c")
            store.committed = asyncio.Event()
            task = asyncio.create_task(s.observe("c", 0, never_run))
            await store.committed.wait()  # begin has committed generation 0 as pending
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            store.committed = None
            for _ in range(500):
                if not await store.pending():
                    break
                await asyncio.sleep(0.01)
            failed = await s.get("c", 0)
            assert failed is not None and (failed.state, failed.error_text) == ("failed", CANCELLED_TEXT)

    asyncio.run(main())
