"""A blocking adapter over ``AsyncObservationStore``, so sync-style tests drive the async front end.

``BlockingStore.open(url)`` opens an ``AsyncObservationStore`` on an event loop
of its own, running in a daemon thread, and offers the surface of
``ObservationStore``: every method call is one coroutine run on that loop, and
its result or exception comes back unchanged. Calls from several threads
become concurrent tasks on the one loop, as in an asyncio host.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Engine

from codemode_store.aio import AsyncObservationStore, AsyncStoreSession
from codemode_store.async_engine import schema_url
from codemode_store.engine import build_engine

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="async-store-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Stop the loop, join its thread and close it."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def _blocking(loop: LoopThread, method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        return loop.run(method(*args, **kwargs))

    return call


class BlockingSession:
    """``StoreSession``'s surface over an ``AsyncStoreSession``."""

    def __init__(self, session: AsyncStoreSession, loop: LoopThread) -> None:
        self._session = session
        self._loop = loop
        self.session_id = session.session_id

    def __getattr__(self, name: str) -> Any:
        return _blocking(self._loop, getattr(self._session, name))


class BlockingStore:
    """``ObservationStore``'s surface over an ``AsyncObservationStore``."""

    def __init__(self, store: AsyncObservationStore, loop: LoopThread) -> None:
        self.async_store = store
        self._loop = loop
        self._engine: Engine | None = None

    @classmethod
    def open(cls, url: Any, **options: Any) -> BlockingStore:
        """Open an ``AsyncObservationStore`` with the options of ``ObservationStore.open``."""
        loop = LoopThread()
        try:
            store = loop.run(_awaited(AsyncObservationStore.open(url, **options)))
        except BaseException:
            loop.close()
            raise
        return cls(store, loop)

    @property
    def max_payload_bytes(self) -> int:
        """The payload limit the async store was opened with."""
        return self.async_store.max_payload_bytes

    @property
    def url(self) -> Any:
        """The URL of the database with its sync driver, for opening it again."""
        return schema_url(self.async_store.url)

    @property
    def engine(self) -> Engine:
        """A sync engine on the same database, for tests that look at the tables."""
        if self._engine is None:
            self._engine = build_engine(self.url)
        return self._engine

    def session(self, session_id: str) -> BlockingSession:
        """Return the blocking handle of one session."""
        return BlockingSession(self.async_store.session(session_id), self._loop)

    def close(self) -> None:
        """Close the async store, its loop and the inspection engine."""
        try:
            self._loop.run(self.async_store.close())
        finally:
            self._loop.close()
            if self._engine is not None:
                self._engine.dispose()

    def __getattr__(self, name: str) -> Any:
        return _blocking(self._loop, getattr(self.async_store, name))

    def __enter__(self) -> BlockingStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _awaited(opening: Any) -> AsyncObservationStore:
    store: AsyncObservationStore = await opening
    return store
