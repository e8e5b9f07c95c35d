"""``AsyncStoreSession.observe``: async and sync ``run``, failures, cancellation, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from codemode_store import Outcome, TextItem
from codemode_store.aio import AsyncObservationStore, AsyncStoreSession
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
        async def run() -> Outcome:
            await asyncio.sleep(60)
            return Outcome.yielded([])

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
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


def test_a_cancellation_while_recording_leaves_nothing_pending(store_url: str) -> None:
    big = Outcome.yielded([TextItem("x" * 2_000_000)])

    async def scenario(store: AsyncObservationStore, s: AsyncStoreSession) -> None:
        task = asyncio.create_task(s.observe("c", 0, lambda: big))
        # Let begin finish and the record start (its payload is prepared in a thread).
        for _ in range(1000):
            if await store.pending():
                break
            await asyncio.sleep(0.001)
        task.cancel()
        try:
            observation = await task
        except asyncio.CancelledError:
            observation = None
        for _ in range(500):
            if not await store.pending():
                break
            await asyncio.sleep(0.01)
        stored = await s.get("c", 0)
        assert stored is not None
        # Either the record won the race and is returned, or the generation failed as cancelled.
        if observation is not None:
            assert observation == stored and stored.state == "retained"
        else:
            assert stored.state in ("retained", "failed")
            if stored.state == "failed":
                assert stored.error_text == CANCELLED_TEXT
        assert await store.pending() == []

    on_store(store_url, scenario)
