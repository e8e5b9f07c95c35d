"""The facade: ``ObservationStore`` and the per-session handle it gives out.

Every operation of the protocol (the methods of ``StoreSession``, and
``pending``, ``fail_pending``, ``end_session`` and ``cells``) prepares one
:class:`~codemode_store.calls.Op` (which validates its arguments) and runs it
in one transaction: a refused one wrote nothing. The maintenance methods are
several transactions, each whole: ``gc`` reads the sessions in one, then
purges each in a write transaction of its own; ``check`` runs SQLite's
``quick_check`` in one and re-hashes a page of payloads per read transaction;
``vacuum`` frees pages in short write transactions (SQLite's incremental
vacuum), or runs ``VACUUM`` and the WAL checkpoint outside any transaction,
as they must. Driver errors become :class:`StoreError` subclasses at one
boundary (``errors_of_database``).

``run`` is the one door to a transaction, public on purpose: the asyncio
front end and ``observe`` run prepared calls through it, and a
:class:`~codemode_store.calls.Call` (exported from ``codemode_store.calls``)
runs any function of a connection the same way. Maintenance code uses the
narrower ``read`` and ``write`` (the ``Transactions`` protocol).

A store opened with a ``host_id`` (docs/several-hosts.md) claims it in one transaction on
open (``hosts.claim``), renews its lease from a daemon thread
(``lease_keeper.LeaseThread``) and ends it on ``close()``; its operations carry
its host id and incarnation (``owner``), so that ``begin`` is fenced and
``record``/``fail`` touch only its own pending rows.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from . import calls, integrity, observe, retention, space
from .calls import DEFAULT_FAIL_TEXT, Call, Op, Owner, now_micros, run_call
from .deadline import DEFAULT_CALL_TIMEOUT, check_call_timeout, deadlines_for
from .engine import (
    DEFAULT_BUSY_TIMEOUT,
    READ_ONLY,
    Durability,
    IdleConnections,
    build_engine,
    is_sqlite,
    to_url,
)
from .errors import DatabaseError, InvalidInput, StoreError
from .group_commit import GroupCommit
from .hosts import HostInfo
from .lease_keeper import RENEWALS_PER_LEASE, LeaseThread
from .migrate import ensure_schema
from .observation import CellSummary, Observation
from .observe import Run
from .operator_log import OperatorLog
from .progress import Progress
from .telemetry import check_telemetry, instrument
from .translate import DRIVER_ERRORS, errors_of_database, translate
from .validation import check_identifier
from .wire import Outcome

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "ObservationStore",
    "StoreSession",
    "check_open_options",
    "now_micros",
]

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: How long a host's lease lasts unless renewed (``open``'s ``lease_seconds``).
DEFAULT_LEASE_SECONDS = 30.0

T = TypeVar("T")


def check_open_options(
    max_payload_bytes: object,
    busy_timeout: object,
    host_id: object = None,
    lease_seconds: object = DEFAULT_LEASE_SECONDS,
    call_timeout: object = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Raise ``InvalidInput`` unless the options of ``open`` are usable."""
    if host_id is not None:
        check_identifier(host_id, "host_id")
    calls.check_lease_seconds(lease_seconds)
    if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int) or max_payload_bytes < 1:
        raise InvalidInput(f"max_payload_bytes must be a positive integer, not {max_payload_bytes!r}")
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or busy_timeout < 0:
        raise InvalidInput(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
    check_call_timeout(call_timeout)


class ObservationStore:
    """The durable memory of a code-mode host: open it with :meth:`open`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        telemetry: bool = True,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        """Wrap an engine whose schema is already at head; prefer :meth:`open`."""
        self._telemetry = instrument(engine.url, telemetry)
        self._log = OperatorLog(engine.url)
        self._engine = engine
        self._deadlines = deadlines_for(engine.url, call_timeout)
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self._writers = IdleConnections(engine)
        self._readers = IdleConnections(self._reader)
        # A store dropped without close() must still hand its idle connections
        # back: the pool warns about connections that are garbage collected.
        weakref.finalize(self, self._writers.close)
        weakref.finalize(self, self._readers.close)
        #: SQLite's writes queue here and share commits (see ``group_commit``).
        self._group = GroupCommit(self._writers) if is_sqlite(engine.url) else None
        self.max_payload_bytes = max_payload_bytes
        #: The host id the store was opened with (``None``: no host id; docs/several-hosts.md).
        self.host_id: str | None = None
        #: The incarnation of ``host_id`` this store holds (``None`` without host id).
        self.incarnation: int | None = None
        #: How many generations of earlier incarnations ``open`` failed.
        self.recovered = 0
        #: How long the lease lasts unless renewed, in seconds.
        self.lease_seconds = DEFAULT_LEASE_SECONDS
        self._lease: LeaseThread | None = None

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
    ) -> ObservationStore:
        """Open the store at a path or SQLAlchemy URL, creating or upgrading its schema.

        ``durability="full"`` (the default) makes SQLite sync every commit to
        disk, so a returned call survives an OS crash or power cut;
        ``"normal"`` trades the last commits before a power cut for speed
        (never corruption); ``max_payload_bytes`` caps one stored payload;
        ``busy_timeout`` is how many seconds a writer waits for a lock (SQLite's
        busy timeout, PostgreSQL's ``lock_timeout``) before ``DatabaseBusy``;
        ``call_timeout`` bounds every PostgreSQL call, even against a frozen
        server (``DatabaseUnavailable``), and how long a session of the store
        may sit idle inside a transaction (a frozen host's row locks).
        ``telemetry=False`` keeps the store from emitting OpenTelemetry spans
        and metrics, which it does whenever ``opentelemetry-api`` is installed
        (see ``codemode_store.telemetry``).

        ``host_id`` names the host slot this process holds (docs/several-hosts.md): the open
        claims its next incarnation, fails the generations its earlier
        incarnations left pending (``recovered`` says how many) and keeps a
        lease of ``lease_seconds``, renewed every third of it in a daemon
        thread until ``close()``. Without it the store never renews a lease
        and never fences anyone (Core's acknowledgements, the CLI).
        """
        check_open_options(max_payload_bytes, busy_timeout, host_id, lease_seconds, call_timeout)
        check_telemetry(telemetry)
        engine = build_engine(
            to_url(url),
            durability=durability,
            busy_timeout=float(busy_timeout),
            call_timeout=float(call_timeout),
        )
        try:
            with errors_of_database():
                ensure_schema(engine)
            store = cls(
                engine, max_payload_bytes=max_payload_bytes, telemetry=telemetry, call_timeout=call_timeout
            )
            if host_id is not None:
                store._claim(host_id, float(lease_seconds))
        except BaseException:
            engine.dispose()
            raise
        return store

    def _claim(self, host_id: str, lease_seconds: float) -> None:
        """Claim the next incarnation of ``host_id`` and start renewing its lease."""
        incarnation, recovered = self.run(calls.claim_host(host_id, lease_seconds))
        self.incarnation, self.recovered = incarnation, recovered
        self.host_id = host_id
        self._log.claimed(host_id, incarnation, recovered)
        self.lease_seconds = lease_seconds
        self._lease = LeaseThread(
            self._renew_lease, lease_seconds / RENEWALS_PER_LEASE, f"codemode-store-lease-{host_id}"
        )
        self._lease.start()
        weakref.finalize(self, self._lease.stop)

    def _renew_lease(self) -> bool:
        owner = self.owner
        if owner is None:
            return False
        if not self.run(calls.renew_lease(owner)):
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
    def engine(self) -> Engine:
        """The SQLAlchemy engine the store runs on."""
        return self._engine

    @property
    def url(self) -> URL:
        """The database URL (render it with ``hide_password=True`` before printing)."""
        return self._engine.url

    def run(self, call: Call[T] | Op[T]) -> T:
        """Run a prepared call in one transaction (a write one if the call writes).

        The calls come from ``codemode_store.calls``; a driver error becomes a
        ``StoreError`` naming the call's key. On SQLite a write waits its turn
        in the store's queue and may share its commit with others (see
        ``group_commit``); it returns once that commit returned.
        """
        if self._telemetry is not None:
            return self._telemetry.run(self._run, call)
        return self._run(call)

    def _run(self, call: Call[T] | Op[T]) -> T:
        if call.writes and self._group is not None:
            try:
                shared = self._group.run(call)
            except StoreError as exc:
                self._log.failed(exc)
                raise
            if self._log.down:
                self._log.back()
            return shared
        connections = self._writers if call.writes else self._readers
        deadlines = self._deadlines
        started = time.monotonic() if deadlines is not None else 0.0
        cut = False
        try:
            conn, driver = connections.take()
            watch = deadlines.arm(conn, started) if deadlines is not None else None
            try:
                try:
                    result = run_call(conn, call, driver)
                finally:
                    # Before the connection goes back: one the watchdog cut is dropped, never kept.
                    if deadlines is not None:
                        cut = deadlines.disarm(watch)
            except StoreError as exc:
                if isinstance(exc, DatabaseError) or cut:
                    connections.drop(conn, driver)
                else:
                    connections.give(conn, driver)  # a rule's answer: the transaction was rolled back
                self._log.failed(exc)
                raise
            except BaseException:
                connections.drop(conn, driver)
                raise
            if cut:
                connections.drop(conn, driver)
            else:
                connections.give(conn, driver)
            if self._log.down:
                self._log.back()
            return result
        except DRIVER_ERRORS as exc:
            # The one boundary, entered only on an error: the call's key is
            # built only when a message needs it.
            if cut:
                assert deadlines is not None
                raise self._log.failed(deadlines.overdue(exc, **call.key)) from exc
            raise self._log.failed(translate(exc, **call.key)) from exc

    def read(self, work: Callable[[Connection], T], *, session_id: str | None = None) -> T:
        """Run ``work(conn)`` in one read transaction (see ``transactions.Transactions``)."""
        return self.run(_call(work, False, session_id))

    def write(self, work: Callable[[Connection], T], *, session_id: str | None = None) -> T:
        """Run ``work(conn)`` in one write transaction (see ``transactions.Transactions``)."""
        return self.run(_call(work, True, session_id))

    def close(self) -> None:
        """End the lease (if any) and close every pooled connection; the store is not used afterwards.

        Ending the lease makes the host lost at once: any store's
        ``fail_pending`` may fail what it left pending, without waiting for
        the lease to run out.
        """
        lease, self._lease = self._lease, None
        owner = self.owner
        if lease is not None and owner is not None:
            lease.stop()
            with contextlib.suppress(StoreError):  # the database is away: the lease runs out
                self.run(calls.end_lease(owner))
        if self._deadlines is not None:
            self._deadlines.close()
        self._writers.close()
        self._readers.close()
        # The pool's own dispose, not the engine's: Engine.dispose() also builds a
        # replacement pool, which a store that is closing will never use (a tenth
        # of the time of an open and close).
        self._engine.pool.dispose()

    def __enter__(self) -> ObservationStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObservationStore({self.url.render_as_string(hide_password=True)!r})"

    def session(self, session_id: str) -> StoreSession:
        """Return the handle of one session; nothing is written until it is used."""
        return StoreSession(self, check_identifier(session_id, "session_id"))

    def pending(self) -> list[Observation]:
        """Return every observation left pending, for example by a crashed host."""
        return self.run(calls.pending())

    def fail_pending(self, error_text: str = DEFAULT_FAIL_TEXT) -> int:
        """Fail the pending observations no live host is running; return how many.

        A host calls this on start, so no generation stays pending after a
        restart. With a host id: its earlier incarnations' rows; without: the
        rows begun without a host id (failed with ``error_text``). Either
        way, the rows of lost hosts (``"host H lost: ..."``), never a live
        host's (docs/several-hosts.md).
        """
        recovered = self.run(calls.fail_pending(error_text, self.max_payload_bytes, self.owner))
        self._log.recovered(recovered, self.host_id)
        return recovered.total

    def hosts(self) -> list[HostInfo]:
        """Return every host id the store has seen: incarnation, lease, live or lost, pending count."""
        return self.run(calls.list_hosts())

    def end_session(self, session_id: str) -> int:
        """Delete every row of a session; return how many observations went (0 if unknown)."""
        return self.run(calls.end_session(session_id))

    def cells(self, session_id: str | None = None) -> list[CellSummary]:
        """Return summaries of the cells of one session, or of every session."""
        return self.run(calls.cells(session_id))

    def gc(
        self,
        older_than: timedelta,
        dry_run: bool = False,
        keep_tombstones: bool = False,
        *,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> retention.GcReport:
        """Purge the sessions idle for ``older_than``, one transaction each (see ``retention.gc``)."""
        return retention.gc(
            self, older_than, dry_run=dry_run, keep_tombstones=keep_tombstones, now=now, progress=progress
        )

    def check(self, *, progress: Progress | None = None) -> integrity.CheckReport:
        """Check the database and re-hash every stored payload (see ``integrity.check``)."""
        return integrity.check(self, progress=progress)

    def vacuum(self, *, full: bool = False, progress: Progress | None = None) -> space.VacuumReport:
        """Give free pages back to the file system (see ``space.vacuum``)."""
        return space.vacuum(self, full=full, progress=progress)


def _call(work: Callable[[Connection], T], writes: bool, session_id: str | None) -> Call[T]:
    key = {} if session_id is None else {"session_id": session_id}
    return Call(lambda conn, _now: work(conn), writes, key)


class StoreSession:
    """The operations of SPEC §3 on one session's cells; get it from ``store.session(id)``."""

    __slots__ = ("_store", "session_id")

    def __init__(self, store: ObservationStore, session_id: str) -> None:
        self._store = store
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"StoreSession({self.session_id!r})"

    def create_cell(self, cell_id: str) -> None:
        """Register an open cell; ``DuplicateCell`` if the session has it already."""
        self._store.run(calls.create_cell(self.session_id, cell_id))

    def begin(
        self, cell_id: str, generation: int, request: Mapping[str, Any] | None = None
    ) -> Observation | None:
        """Start observe request ``generation``: ``None`` to run it, or the replayed observation."""
        store = self._store
        return store.run(calls.begin(self.session_id, cell_id, generation, request, store.owner))

    def record(self, cell_id: str, generation: int, outcome: Outcome | Mapping[str, Any]) -> None:
        """Store the outcome of pending ``generation``; a wire object is accepted too."""
        store = self._store
        store.run(
            calls.record(self.session_id, cell_id, generation, outcome, store.max_payload_bytes, store.owner)
        )

    def fail(self, cell_id: str, generation: int, error_text: str) -> None:
        """Mark pending ``generation`` failed: it replays as ``error_text``."""
        store = self._store
        store.run(
            calls.fail(self.session_id, cell_id, generation, error_text, store.max_payload_bytes, store.owner)
        )

    def release(self, cell_id: str, generation: int) -> bool:
        """Acknowledge ``generation``; ``True`` if this call dropped its payload."""
        return self._store.run(calls.release(self.session_id, cell_id, generation))

    def close_cell(self, cell_id: str) -> None:
        """Mark the cell closed (no later generation will come); a no-op if closed."""
        self._store.run(calls.close_cell(self.session_id, cell_id))

    def get(self, cell_id: str, generation: int) -> Observation | None:
        """Return one observation, or ``None`` if the cell has no such generation."""
        return self._store.run(calls.get(self.session_id, cell_id, generation))

    def history(self, cell_id: str) -> list[Observation]:
        """Return every observation of the cell, in generation order."""
        return self._store.run(calls.history(self.session_id, cell_id))

    def cells(self) -> list[CellSummary]:
        """Return summaries of this session's cells."""
        return self._store.cells(self.session_id)

    def observe(
        self,
        cell_id: str,
        generation: int,
        run: Run,
        request: Mapping[str, Any] | None = None,
    ) -> Observation:
        """Answer observe request ``generation``: the replay, or ``run()`` recorded (or failed).

        ``run`` is called only when ``begin`` says to run the cell. Its
        ``Outcome`` (or wire object) is recorded; an exception of ``run`` fails
        the generation with ``"Type: message"`` and the failed observation is
        returned; ``KeyboardInterrupt`` or ``SystemExit`` fails it as
        ``"cancelled"`` and is re-raised; anything else ``run`` returns fails
        it and raises ``InvalidInput``. The generation never stays pending.
        """
        return observe.observe(self._store, self.session_id, cell_id, generation, run, request)
