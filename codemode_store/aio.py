"""The asyncio front end: ``AsyncObservationStore``, awaitable, same rules as the sync one.

It adds no rule and no check of its own. Every method prepares the very
:class:`~codemode_store.calls.Op` that ``ObservationStore`` prepares and runs
it with the same ``calls.run_call`` through ``AsyncConnection.run_sync``, with
driver errors mapped at the same boundary (``translate``). Opening runs the sync
store's own ``open`` (options, the 0600 file, schema upgrade) in a worker
thread, then talks to the database through aiosqlite or psycopg's async mode::

    async with AsyncObservationStore.open("host.db") as store:
        s = store.session("thread-1")
        await s.create_cell("cell-1")
"""

from __future__ import annotations

try:
    # The async extra: SQLAlchemy's asyncio support runs on greenlet, SQLite on
    # aiosqlite. Without them SQLAlchemy would suggest its own extra, not ours.
    import aiosqlite  # noqa: F401
    import greenlet  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"codemode_store.aio needs the async extra, and {exc.name or 'a module of it'} is missing: "
        "install codemode-store[async] (pip install 'codemode-store[async]')",
        name=exc.name,
    ) from exc

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from . import calls, observe
from .async_engine import build_async_engine, schema_url
from .calls import DEFAULT_FAIL_TEXT, Call, Op, Owner, run_call
from .deadline import DEFAULT_CALL_TIMEOUT, Deadlines, deadlines_for
from .engine import DEFAULT_BUSY_TIMEOUT, READ_ONLY, Durability, is_sqlite, to_url
from .errors import StoreError
from .group_commit import AsyncGroupCommit
from .hosts import HostInfo
from .lease_keeper import RENEWALS_PER_LEASE, LeaseTask
from .observation import CellSummary, Observation
from .observe import AsyncRun
from .operator_log import OperatorLog
from .store import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    ObservationStore,
    check_open_options,
)
from .telemetry import check_telemetry, instrument
from .translate import DRIVER_ERRORS, translate
from .validation import check_identifier
from .wire import Outcome

__all__ = ["AsyncObservationStore", "AsyncStoreSession", "OpeningStore"]

T = TypeVar("T")


class AsyncObservationStore:
    """The observation store for asyncio hosts: open it with :meth:`open`.

    Its connections belong to the event loop that first uses them: share the
    store among the tasks of one loop, not among loops.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        telemetry: bool = True,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        """Wrap an async engine whose schema is already at head; prefer :meth:`open`."""
        self._telemetry = instrument(engine.url, telemetry)
        self._log = OperatorLog(engine.url)
        self._engine = engine
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self._deadlines = deadlines_for(engine.url, call_timeout)
        #: SQLite's writes queue here and share commits (see ``group_commit``).
        self._group = AsyncGroupCommit(engine) if is_sqlite(engine.url) else None
        self.max_payload_bytes = max_payload_bytes
        #: The host id the store was opened with (``None``: no host id; docs/several-hosts.md).
        self.host_id: str | None = None
        #: The incarnation of ``host_id`` this store holds (``None`` without host id).
        self.incarnation: int | None = None
        #: How many generations of earlier incarnations ``open`` failed.
        self.recovered = 0
        #: How long the lease lasts unless renewed, in seconds.
        self.lease_seconds = DEFAULT_LEASE_SECONDS
        self._lease: LeaseTask | None = None

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str] | URL,
        *,
        durability: Durability = "full",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        host_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        telemetry: bool = True,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> OpeningStore:
        """Open the store at a path or URL: ``await`` the result, or use it in ``async with``.

        The options are those of ``ObservationStore.open``, ``telemetry`` too.
        SQLite runs through aiosqlite, PostgreSQL through psycopg 3
        (``codemode-store[async]``). With a ``host_id`` the lease is renewed
        by a task of the loop that opened the store, until ``close()``.
        """

        async def opening() -> AsyncObservationStore:
            check_open_options(max_payload_bytes, busy_timeout, host_id, lease_seconds, call_timeout)
            check_telemetry(telemetry)
            target = to_url(url)
            # The sync front end's own open makes the file (0600, WAL) and the
            # schema; in a thread, so a migration or a held lock leaves the loop free.
            sync_store = await asyncio.to_thread(
                ObservationStore.open,
                schema_url(target),
                durability=durability,
                max_payload_bytes=max_payload_bytes,
                busy_timeout=busy_timeout,
                telemetry=False,
                call_timeout=call_timeout,
            )
            sync_store.close()
            engine = build_async_engine(
                target,
                durability=durability,
                busy_timeout=float(busy_timeout),
                call_timeout=float(call_timeout),
            )
            store = cls(
                engine, max_payload_bytes=max_payload_bytes, telemetry=telemetry, call_timeout=call_timeout
            )
            if host_id is not None:
                try:
                    await store._claim(host_id, float(lease_seconds))
                except BaseException:
                    await engine.dispose()
                    raise
            return store

        return OpeningStore(opening)

    async def _claim(self, host_id: str, lease_seconds: float) -> None:
        """Claim the next incarnation of ``host_id`` and start renewing its lease."""
        incarnation, recovered = await self.run(calls.claim_host(host_id, lease_seconds))
        self.incarnation, self.recovered = incarnation, recovered
        self.host_id = host_id
        self._log.claimed(host_id, incarnation, recovered)
        self.lease_seconds = lease_seconds
        self._lease = LeaseTask(self._renew_lease, lease_seconds / RENEWALS_PER_LEASE)

    async def _renew_lease(self) -> bool:
        owner = self.owner
        if owner is None:
            return False
        if not await self.run(calls.renew_lease(owner)):
            self._log.fenced(*owner)
            return False
        return True

    @property
    def owner(self) -> Owner:
        """The host id and incarnation this store writes as, or ``None`` (opened without host id)."""
        if self.host_id is None or self.incarnation is None:
            return None
        return (self.host_id, self.incarnation)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy asyncio engine the store runs on."""
        return self._engine

    @property
    def url(self) -> URL:
        """The database URL (render it with ``hide_password=True`` before printing)."""
        return self._engine.url

    async def run(self, call: Call[T] | Op[T]) -> T:
        """Run a prepared call in one transaction (a write one if the call writes).

        On SQLite a write waits its turn in the store's queue and may share its
        commit with others (see ``group_commit``).
        """
        if self._telemetry is not None:
            return await self._telemetry.run_async(self._run, call)
        return await self._run(call)

    async def _run(self, call: Call[T] | Op[T]) -> T:
        engine = self._engine if call.writes else self._reader
        deadlines = self._deadlines
        try:
            if call.writes and self._group is not None:
                result = await self._group.run(call)
            else:
                async with engine.connect() as conn:
                    # The sync front end's own transaction code, on the async driver's adapter.
                    if deadlines is None:
                        result = await conn.run_sync(run_call, call)
                    else:
                        result = await conn.run_sync(_run_watched, call, deadlines, time.monotonic())
        except StoreError as exc:
            self._log.failed(exc)
            raise
        except DRIVER_ERRORS as exc:
            # The one boundary, entered only on an error (see ObservationStore.run).
            raise self._log.failed(translate(exc, **call.key)) from exc
        if self._log.down:
            self._log.back()
        return result

    async def close(self) -> None:
        """End the lease (if any) and release every pooled connection; the store is not used afterwards."""
        lease, self._lease = self._lease, None
        owner = self.owner
        if lease is not None and owner is not None:
            await lease.stop()
            with contextlib.suppress(StoreError):  # the database is away: the lease runs out
                await self.run(calls.end_lease(owner))
        if self._deadlines is not None:
            self._deadlines.close()
        await self._engine.dispose()

    async def __aenter__(self) -> AsyncObservationStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncObservationStore({self.url.render_as_string(hide_password=True)!r})"

    def session(self, session_id: str) -> AsyncStoreSession:
        """Return the handle of one session; nothing is read or written until it is used."""
        return AsyncStoreSession(self, check_identifier(session_id, "session_id"))

    async def pending(self) -> list[Observation]:
        """Return every observation left pending, for example by a crashed host."""
        return await self.run(calls.pending())

    async def fail_pending(self, error_text: str = DEFAULT_FAIL_TEXT) -> int:
        """Fail the pending observations no live host is running; return how many (docs/several-hosts.md)."""
        recovered = await self.run(calls.fail_pending(error_text, self.max_payload_bytes, self.owner))
        self._log.recovered(recovered, self.host_id)
        return recovered.total

    async def hosts(self) -> list[HostInfo]:
        """Return every host id the store has seen: incarnation, lease, live or lost, pending count."""
        return await self.run(calls.list_hosts())

    async def end_session(self, session_id: str) -> int:
        """Delete every row of a session; return how many observations went (0 if unknown)."""
        return await self.run(calls.end_session(session_id))

    async def cells(self, session_id: str | None = None) -> list[CellSummary]:
        """Return summaries of the cells of one session, or of every session."""
        return await self.run(calls.cells(session_id))


def _run_watched(conn: Connection, call: Call[T] | Op[T], deadlines: Deadlines, started: float) -> T:
    """Run ``call`` as ``run_call`` does, its connection cut if it is still running at its deadline."""
    watch = deadlines.arm(conn, started)
    try:
        return run_call(conn, call)
    except DRIVER_ERRORS as exc:
        cut = deadlines.disarm(watch)
        watch = None
        if cut:
            raise deadlines.overdue(exc, **call.key) from exc
        raise
    finally:
        if watch is not None:
            deadlines.disarm(watch)


class OpeningStore:
    """What :meth:`AsyncObservationStore.open` returns: awaitable, and an async context manager.

    ``store = await AsyncObservationStore.open(url)`` opens the store;
    ``async with AsyncObservationStore.open(url) as store:`` also closes it.
    """

    __slots__ = ("_opening", "_store")

    def __init__(self, opening: Callable[[], Coroutine[Any, Any, AsyncObservationStore]]) -> None:
        self._opening = opening
        self._store: AsyncObservationStore | None = None

    def __await__(self) -> Generator[Any, None, AsyncObservationStore]:
        return self._opening().__await__()

    async def __aenter__(self) -> AsyncObservationStore:
        self._store = await self._opening()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


class AsyncStoreSession:
    """The operations of docs/protocol.md on one session's cells, awaitable; from ``store.session(id)``."""

    __slots__ = ("_store", "session_id")

    def __init__(self, store: AsyncObservationStore, session_id: str) -> None:
        self._store = store
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"AsyncStoreSession({self.session_id!r})"

    async def create_cell(self, cell_id: str) -> None:
        """Register an open cell; ``DuplicateCell`` if the session has it already."""
        await self._store.run(calls.create_cell(self.session_id, cell_id))

    async def begin(
        self, cell_id: str, generation: int, request: Mapping[str, Any] | None = None
    ) -> Observation | None:
        """Start observe request ``generation``: ``None`` to run it, or the replayed observation."""
        store = self._store
        return await store.run(calls.begin(self.session_id, cell_id, generation, request, store.owner))

    async def record(self, cell_id: str, generation: int, outcome: Outcome | Mapping[str, Any]) -> None:
        """Store the outcome of pending ``generation``; a wire object is accepted too."""
        # Encoding and hashing a payload of many megabytes would stall the loop:
        # the call is prepared in a worker thread, then run like any other.
        store = self._store
        call = await asyncio.to_thread(
            calls.record, self.session_id, cell_id, generation, outcome, store.max_payload_bytes, store.owner
        )
        await store.run(call)

    async def fail(self, cell_id: str, generation: int, error_text: str) -> None:
        """Mark pending ``generation`` failed: it replays as ``error_text``."""
        store = self._store
        call = await asyncio.to_thread(
            calls.fail, self.session_id, cell_id, generation, error_text, store.max_payload_bytes, store.owner
        )
        await store.run(call)

    async def release(self, cell_id: str, generation: int) -> bool:
        """Acknowledge ``generation``; ``True`` if this call dropped its payload."""
        return await self._store.run(calls.release(self.session_id, cell_id, generation))

    async def close_cell(self, cell_id: str) -> None:
        """Mark the cell closed (no later generation will come); a no-op if closed."""
        await self._store.run(calls.close_cell(self.session_id, cell_id))

    async def get(self, cell_id: str, generation: int) -> Observation | None:
        """Return one observation, or ``None`` if the cell has no such generation."""
        return await self._store.run(calls.get(self.session_id, cell_id, generation))

    async def history(self, cell_id: str) -> list[Observation]:
        """Return every observation of the cell, in generation order."""
        return await self._store.run(calls.history(self.session_id, cell_id))

    async def cells(self) -> list[CellSummary]:
        """Return summaries of this session's cells."""
        return await self._store.cells(self.session_id)

    async def observe(
        self,
        cell_id: str,
        generation: int,
        run: AsyncRun,
        request: Mapping[str, Any] | None = None,
    ) -> Observation:
        """Answer observe request ``generation``: the replay, or ``run()`` (awaited if async) recorded.

        The rules of ``StoreSession.observe``; ``asyncio.CancelledError`` too
        fails the generation as ``"cancelled"`` (even if cancelled again while
        failing it) and is re-raised.
        """
        return await observe.observe_async(self._store, self.session_id, cell_id, generation, run, request)
