"""``observe``: the acknowledgement contract of a host in one call, for both front ends.

``begin``; on a replay, return the stored observation and run nothing; else run
the cell, ``record`` what it returns, and return the stored observation (built
from what was written, not read back). Whatever goes wrong after ``begin``, the
generation does not stay pending: an exception of ``run`` becomes a ``failed``
generation that replays as its text; an interruption (``KeyboardInterrupt``,
``SystemExit``, ``asyncio.CancelledError``) fails it as ``"cancelled"`` and goes
on; a ``run`` that returns neither an ``Outcome`` nor a wire object fails it with
the ``InvalidInput`` that is then raised.

The asyncio version also covers a cancellation that lands while ``begin``
itself runs: ``begin`` goes on shielded, and a generation it started is failed
as ``"cancelled"``. The sync version cannot tell whether a ``KeyboardInterrupt``
raised inside ``begin`` came before or after its commit; such a generation
stays pending until ``fail_pending`` (the process is usually exiting anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

from . import calls
from .calls import Call, Op, Owner
from .errors import StoreError
from .observation import Observation
from .wire import Outcome

__all__ = [
    "CANCELLED_TEXT",
    "FAILURE_TEXT_LIMIT",
    "AsyncRun",
    "Run",
    "failure_text",
    "observe",
    "observe_async",
]

#: The error text of a generation whose run was interrupted.
CANCELLED_TEXT = "cancelled"
#: At most this many characters of an exception's text are stored.
FAILURE_TEXT_LIMIT = 2000

T = TypeVar("T")
Result: TypeAlias = Outcome | Mapping[str, Any]
Run: TypeAlias = Callable[[], Result]
AsyncRun: TypeAlias = Callable[[], Result | Awaitable[Result]]


class SyncRunner(Protocol):
    """What ``observe`` needs of a store: run a prepared call; the payload limit; who it writes as."""

    max_payload_bytes: int

    @property
    def owner(self) -> Owner:
        """The host id and incarnation the store writes as, or ``None``."""

    def run(self, call: Call[T] | Op[T]) -> T:
        """Run ``call`` in one transaction."""


class AsyncRunner(Protocol):
    """What ``observe_async`` needs of a store: run a prepared call; the payload limit; who it writes as."""

    max_payload_bytes: int

    @property
    def owner(self) -> Owner:
        """The host id and incarnation the store writes as, or ``None``."""

    async def run(self, call: Call[T] | Op[T]) -> T:
        """Run ``call`` in one transaction."""


def failure_text(exc: BaseException, limit: int = FAILURE_TEXT_LIMIT) -> str:
    """Return ``"Type: message"`` of an exception, at most ``limit`` characters of storable text."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not leave the generation pending
        message = "<message not printable>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # A lone surrogate in the message would make the text itself InvalidInput.
    return text.encode("utf-8", "replace").decode("utf-8")


def _ending_text(exc: BaseException) -> str:
    return failure_text(exc) if isinstance(exc, Exception) else CANCELLED_TEXT


def _discard(result: object) -> None:
    # A coroutine handed to the sync observe is never awaited: close it, so it
    # does not warn "never awaited".
    if inspect.iscoroutine(result):
        result.close()


def observe(
    store: SyncRunner,
    session_id: str,
    cell_id: str,
    generation: int,
    run: Run,
    request: Mapping[str, Any] | None = None,
) -> Observation:
    """Begin ``generation``; replay it, or run it and record (or fail) it (see the module)."""
    owner = store.owner
    replay = store.run(calls.begin(session_id, cell_id, generation, request, owner))
    if replay is not None:
        return replay
    limit = store.max_payload_bytes

    def end(text: str) -> Observation:
        return store.run(calls.fail_observation(session_id, cell_id, generation, text, limit, owner))

    try:
        result = run()
    except Exception as exc:
        return end(failure_text(exc))
    except BaseException:
        _end_quietly(end, CANCELLED_TEXT)
        raise
    try:
        return store.run(calls.record_observation(session_id, cell_id, generation, result, limit, owner))
    except BaseException as exc:
        _discard(result)
        _end_quietly(end, _ending_text(exc))
        raise


def _end_quietly(end: Callable[[str], Observation], text: str) -> None:
    """Fail the generation on the way out of an error that is raised anyway."""
    # The record did commit (NotPending), or the database is gone: the error
    # being raised says more, and fail_pending on restart resolves the rest.
    with contextlib.suppress(StoreError):
        end(text)


async def observe_async(
    store: AsyncRunner,
    session_id: str,
    cell_id: str,
    generation: int,
    run: AsyncRun,
    request: Mapping[str, Any] | None = None,
) -> Observation:
    """Begin ``generation``; replay it, or await ``run`` and record (or fail) it (see the module)."""
    limit = store.max_payload_bytes
    owner = store.owner

    async def end(text: str) -> Observation:
        return await store.run(calls.fail_observation(session_id, cell_id, generation, text, limit, owner))

    # A cancellation must not land between begin's commit and the try below:
    # begin runs shielded, and if it started the generation, that is failed.
    begun = store.run(calls.begin(session_id, cell_id, generation, request, owner))
    starting = _keep(asyncio.ensure_future(begun))
    try:
        replay = await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(StoreError):
            await _shielded(_fail_once_begun(starting, end))
        raise
    if replay is not None:
        return replay

    try:
        result = run()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return await _shielded(end(failure_text(exc)))
    except BaseException:
        await _end_shielded(end, CANCELLED_TEXT)
        raise
    try:
        # Encoding and hashing a large payload would stall the loop: in a thread.
        call = await asyncio.to_thread(
            calls.record_observation, session_id, cell_id, generation, result, limit, owner
        )
        return await store.run(call)
    except BaseException as exc:
        await _end_shielded(end, _ending_text(exc))
        raise


#: Store calls that go on after the task awaiting them was cancelled: held here
#: until done, since the loop keeps only weak references to tasks.
_GOING_ON: set[asyncio.Future[Any]] = set()


def _keep(future: asyncio.Future[T]) -> asyncio.Future[T]:
    _GOING_ON.add(future)
    future.add_done_callback(_collect)
    return future


def _collect(future: asyncio.Future[Any]) -> None:
    _GOING_ON.discard(future)
    # Its error, if any, counts as retrieved: a cancelled waiter never saw it.
    if not future.cancelled():
        future.exception()


async def _shielded(work: Awaitable[T]) -> T:
    """Await ``work``; a cancellation meanwhile stops the wait, not the work."""
    return await asyncio.shield(_keep(asyncio.ensure_future(work)))


async def _end_shielded(end: Callable[[str], Awaitable[Observation]], text: str) -> None:
    """Fail the generation on the way out of an error that is raised anyway, even if cancelled again."""
    with contextlib.suppress(StoreError):
        await _shielded(end(text))


async def _fail_once_begun(
    starting: asyncio.Future[Observation | None], end: Callable[[str], Awaitable[Observation]]
) -> None:
    """Wait for an interrupted begin; if it started the generation, fail it as cancelled."""
    if await starting is None:
        await end(CANCELLED_TEXT)
