"""Group commit on SQLite: the writes of one store that wait share one transaction.

SQLite has one writer at a time, and at ``durability="full"`` every commit
waits for an fsync. Left to SQLite, the threads of one host that write at once
sleep and retry in its busy handler, each paying for its own fsync, and on a
slow disk some give up with ``database is locked``. Here they queue instead:

- **Who commits.** A writer that finds nobody committing is the *leader*: it
  runs its own operation at once, alone (no savepoint, nothing extra: a host
  with one session pays only a lock taken and released). Writers that arrive
  while a leader commits are *followers*: they append their operation to the
  store's FIFO queue and sleep. When the leader's commit returned, it hands
  the lead to the first follower in the queue, which commits the queue's head
  as one transaction: ``BEGIN IMMEDIATE``, each operation inside a
  ``SAVEPOINT`` of its own, one ``COMMIT`` (one fsync). It takes the next
  operation only once it ran the ones before, so writes that arrive meanwhile
  join this commit (up to ``MAX_BATCH`` operations and ``MAX_BATCH_BYTES`` of
  payload), and before its COMMIT it may linger briefly for the callers the
  last commit released (see :class:`GroupCommit`). So writers are served in
  arrival order, and SQLite's busy handler only ever waits for other
  processes (another store object counts as another process).
- **How a caller waits.** A follower sleeps on a lock of its own until the
  leader that ran its operation wakes it: with its result or its error once
  the ``COMMIT`` holding the operation returned, or with the lead. Nobody is
  told anything before that commit: not a result, not a rule's error (which
  may depend on an earlier operation of the batch).
- **Errors.** A rule's error (``StoreError``) rolls back to the operation's
  savepoint: that operation wrote nothing, the others of the batch go on, and
  its caller alone gets the error. A driver error inside one operation rolls
  the transaction back; that operation gets the error and the rest of the
  batch runs again in a new transaction (nothing of it was committed). A
  failed ``BEGIN`` or ``COMMIT`` fails every operation of the batch with the
  translated error, each naming its own session, cell and generation: none is
  acknowledged. An interruption of the leader itself (``KeyboardInterrupt``)
  rolls back, puts the batch back at the head of the queue and hands the lead
  on; a follower interrupted while it waits takes its write out of the queue
  (or hands on the lead it was just given).

A :class:`~codemode_store.calls.Call` (maintenance work written with
SQLAlchemy) takes its turn in the same queue but runs alone, in a transaction
of its own. :class:`AsyncGroupCommit` is the same queue for asyncio tasks: a
task awaits a future, and one drainer task runs the batches on one
connection through ``run_sync`` (no thread per waiting task). PostgreSQL
needs none of this: its server groups the commits of concurrent
transactions itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from _thread import LockType
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Connection

from .calls import Call, Op, now_micros, run_call
from .driver import Driver
from .engine import BEGIN_WRITE, IdleConnections
from .errors import DatabaseError, StoreError
from .payload import PreparedPayload
from .translate import DRIVER_ERRORS, translate

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "AsyncGroupCommit",
    "CommitFigures",
    "Feed",
    "GroupCommit",
    "Pending",
    "commit_batch",
]

T = TypeVar("T")

#: At most this many operations share one transaction: a bound on how long
#: the queue's head waits for the operations behind it.
MAX_BATCH = 128
#: A batch takes no further operation once its payloads reach this many bytes
#: (the first one always goes, however large).
MAX_BATCH_BYTES = 32 << 20

_WAITING, _DONE, _LEAD = 0, 1, 2
_SAVEPOINT = "SAVEPOINT codemode_op"
_ROLLBACK_TO = "ROLLBACK TO codemode_op"
_RELEASE = "RELEASE codemode_op"


class Pending(Generic[T]):
    """One write waiting in the queue: its call, then its result or error once committed."""

    __slots__ = ("call", "error", "future", "result", "state", "wake")

    def __init__(self, call: Call[T] | Op[T]) -> None:
        """Wrap a prepared write."""
        self.call = call
        self.state = _WAITING
        self.result: T | None = None
        self.error: BaseException | None = None
        #: A follower's lock, held until the leader releases it (threads).
        self.wake: Any = None
        #: The waiting task's future (asyncio).
        self.future: asyncio.Future[T] | None = None

    def outcome(self) -> T:
        """Return the committed result, or raise the operation's error."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class CommitFigures:
    """How a store's writes were committed: transactions, operations, and the largest batch."""

    __slots__ = ("commits", "largest", "operations")

    def __init__(self) -> None:
        """Start from nothing."""
        self.commits = 0
        self.operations = 0
        self.largest = 1  # a write alone is a batch of one

    def count(self, batch: int) -> None:
        """Count one transaction of ``batch`` operations (called by the leader alone)."""
        self.commits += 1
        self.operations += batch
        self.largest = max(self.largest, batch)


# -- one batch in one transaction ------------------------------------------------------------------------


def _payload_bytes(call: Call[Any] | Op[Any]) -> int:
    if not isinstance(call, Op):
        return 0
    return sum(arg.size for arg in call.args if isinstance(arg, PreparedPayload))


def _typed(exc: Exception, call: Call[Any] | Op[Any]) -> BaseException:
    """Return the error a caller gets for ``exc``: a driver error translated, with its cause."""
    if isinstance(exc, DRIVER_ERRORS):
        error = translate(exc, **call.key)
        error.__cause__ = exc
        return error
    return exc


class Feed:
    """More operations for a batch that is running: the queue's head, while it fits.

    The leader takes the next operation only once it has run the ones before,
    so that writes arriving meanwhile (the followers of the last commit, with
    their next call) still join this commit instead of waiting for the next.
    ``lock`` guards the queue among threads (``None`` on an event loop).
    ``linger``, when the queue is empty, yields to the writers that are on their
    way and says whether to look again (see ``GroupCommit``).
    """

    __slots__ = ("commit_seconds", "count", "linger", "lock", "queue", "size")

    def __init__(
        self,
        queue: deque[Pending[Any]],
        lock: LockType | None,
        first: Pending[Any],
        linger: Callable[[], bool] | None = None,
    ) -> None:
        """Feed from ``queue`` a batch that starts with ``first``."""
        self.queue = queue
        self.lock = lock
        self.linger = linger
        self.count = 1
        self.size = _payload_bytes(first.call)
        #: How long the batch's COMMIT took (0 until it ran).
        self.commit_seconds = 0.0

    def __call__(self) -> Pending[Any] | None:
        """Return the next operation of the queue if the batch can take it, else ``None``."""
        if self.lock is None:
            return self._next()
        with self.lock:
            return self._next()

    def _next(self) -> Pending[Any] | None:
        queue = self.queue
        while queue:
            head = queue[0]
            if _abandoned(head):
                queue.popleft()
                continue
            if not isinstance(head.call, Op) or self.count >= MAX_BATCH:
                return None
            size = self.size + _payload_bytes(head.call)
            if size > MAX_BATCH_BYTES:
                return None
            self.count, self.size = self.count + 1, size
            return queue.popleft()
        return None


def commit_batch(
    conn: Connection, batch: list[Pending[Any]], kept: Driver | None = None, feed: Feed | None = None
) -> bool:
    """Run ``batch`` in one transaction on ``conn`` and settle each entry; return whether ``conn`` is fine.

    A batch is one :class:`Call` (run alone), or operations: one alone (no
    savepoint), or each in a savepoint of its own when ``feed`` may bring more,
    which are appended to ``batch``. Every entry ends settled (result or
    error) unless an exception that is not an ``Exception`` escapes: then
    nothing of the batch was committed, and its unsettled entries may run
    again. ``kept`` is the connection's kept driver.
    """
    first = batch[0].call
    if not isinstance(first, Op):
        assert len(batch) == 1
        try:
            batch[0].result = run_call(conn, first)
        except StoreError as exc:
            batch[0].error = exc
        except Exception as exc:
            batch[0].error = _typed(exc, first)
            batch[0].state = _DONE
            return False
        batch[0].state = _DONE
        return not isinstance(batch[0].error, DatabaseError)
    db = Driver(conn) if kept is None else kept.renew()
    try:
        todo, clean = _attempt(db, batch, feed)
        while todo:  # after a driver error in one operation: the others again, without it
            todo, fine = _attempt(db, todo, None)
            clean = clean and fine
        return clean
    finally:
        if kept is None:
            db.close()


def _attempt(db: Driver, entries: list[Pending[Any]], feed: Feed | None) -> tuple[list[Pending[Any]], bool]:
    """Run ``entries`` (and what ``feed`` brings) in one transaction.

    Return the entries to run again, and whether no driver error came.
    """
    savepoints = feed is not None or len(entries) > 1
    try:
        db.execute(BEGIN_WRITE)
    except DRIVER_ERRORS as exc:
        _settle_all(entries, exc)
        return [], False
    outcomes: list[tuple[Any, BaseException | None]] = []
    try:
        index = 0
        while True:
            if index == len(entries):
                following = feed() if feed is not None else None
                while following is None and feed is not None and feed.linger is not None and feed.linger():
                    following = feed()
                if following is None:
                    break
                entries.append(following)
            entry = entries[index]
            op: Op[Any] = entry.call  # type: ignore[assignment]
            index += 1
            try:
                if savepoints:
                    db.execute(_SAVEPOINT)
                value = op.locked(db, now_micros(), *op.args)
            except StoreError as exc:
                if not savepoints:
                    db.rollback()
                    entry.error, entry.state = exc, _DONE
                    return [], not isinstance(exc, DatabaseError)
                db.execute(_ROLLBACK_TO)
                db.execute(_RELEASE)
                outcomes.append((None, exc))
                continue
            except Exception as exc:
                # A driver error (or a bug) in this operation: it alone gets the
                # error; the others, of which nothing is committed, run again.
                db.rollback()
                entry.error, entry.state = _typed(exc, op), _DONE
                return entries[: index - 1] + entries[index:], False
            if savepoints:
                db.execute(_RELEASE)
            outcomes.append((value, None))
        started = time.perf_counter()
        db.commit()
        if feed is not None:
            feed.commit_seconds = time.perf_counter() - started
    except BaseException as exc:
        db.rollback()
        if isinstance(exc, Exception):
            # A savepoint statement or the COMMIT failed: nothing of the batch
            # is durable, and every caller hears so; none is acknowledged.
            _settle_all(entries, exc)
            return [], False
        raise
    clean = True
    for entry, (value, error) in zip(entries, outcomes, strict=True):
        entry.result, entry.error, entry.state = value, error, _DONE
        clean = clean and not isinstance(error, DatabaseError)
    return [], clean


def _settle_all(entries: Sequence[Pending[Any]], exc: Exception) -> None:
    for entry in entries:
        entry.error, entry.state = _typed(exc, entry.call), _DONE


def _abandoned(entry: Pending[Any]) -> bool:
    """Tell whether the asyncio task waiting for ``entry`` was cancelled before it ran."""
    return entry.future is not None and entry.future.done()


# -- threads ----------------------------------------------------------------------------------------------


class GroupCommit:
    """The write queue of one store's threads (see the module): ``run`` a write, get its committed result.

    A leader whose batch ran out of queued writes may linger before its
    COMMIT, for at most half as long as the last COMMIT took (a tenth of a
    millisecond at ``normal``, a slow disk's flush at ``full``): long enough
    for the callers the last commit released, which are on their way back
    with their next write, to join this commit instead of waiting for the
    next one. It lingers only while fewer of them came back than left, so a
    session alone never waits.
    """

    __slots__ = (
        "_arrival",
        "_arrivals",
        "_commit_seconds",
        "_connections",
        "_leading",
        "_mutex",
        "_queue",
        "_released",
        "_released_at",
        "figures",
    )

    def __init__(self, connections: IdleConnections) -> None:
        """Commit on connections lent by ``connections`` (the store's writers)."""
        self._connections = connections
        self._mutex = threading.Lock()
        #: Notified (under the mutex) by every write that joins the queue.
        self._arrival = threading.Condition(self._mutex)
        self._queue: deque[Pending[Any]] = deque()
        self._leading = False
        self._arrivals = 0  # writes queued so far
        self._released = 0  # callers the last batch released
        self._released_at = 0  # arrivals when it released them
        self._commit_seconds = 0.0  # how long the last shared COMMIT took
        self.figures = CommitFigures()

    def run(self, call: Call[T] | Op[T]) -> T:
        """Run a write in the next transaction; return once the commit holding it returned."""
        mutex = self._mutex
        with mutex:
            if self._leading:
                entry: Pending[T] = Pending(call)
                entry.wake = threading.Lock()
                entry.wake.acquire()
                self._queue.append(entry)
                self._arrivals += 1
                self._arrival.notify()
                leading = False
            else:
                self._leading = leading = True
                # Right after a shared commit the callers it released are on their
                # way back: this batch takes them (see the class).
                shared = self._released > 1 and isinstance(call, Op)
        if leading:
            if shared:
                entry = Pending(call)
                self._lead([entry], entry, Feed(self._queue, mutex, entry, self._patience()))
                return entry.outcome()
            # Alone: the write runs as it would without a queue (the store's own path).
            connections = self._connections
            try:
                conn, driver = connections.take()
                try:
                    result = run_call(conn, call, driver)
                except StoreError as exc:
                    if isinstance(exc, DatabaseError):
                        connections.drop(conn, driver)
                    else:
                        connections.give(conn, driver)  # a rule's answer: the transaction was rolled back
                    raise
                except BaseException:
                    connections.drop(conn, driver)
                    raise
                connections.give(conn, driver)
                return result
            except DRIVER_ERRORS as exc:
                raise translate(exc, **call.key) from exc
            finally:
                self.figures.commits += 1
                self.figures.operations += 1
                with mutex:  # _hand_over(None), inline: this is every lone write's path
                    self._released, self._released_at = 1, self._arrivals
                    following = self._queue[0] if self._queue else None
                    if following is None:
                        self._leading = False
                    else:
                        following.state = _LEAD
                if following is not None:
                    following.wake.release()
        try:
            entry.wake.acquire()  # until the leader settles this write, or hands over the lead
        except BaseException:
            self._withdraw(entry)
            raise
        if entry.state == _LEAD:
            with mutex:
                self._queue.popleft()  # this entry, at the head
            feed = Feed(self._queue, mutex, entry, self._patience()) if isinstance(call, Op) else None
            self._lead([entry], entry, feed)
        return entry.outcome()

    def _withdraw(self, entry: Pending[Any]) -> None:
        """Take back the write of a follower interrupted while it waited (``KeyboardInterrupt``).

        Still queued, it is removed and never runs; handed the lead, it hands
        the lead on, so the queue never waits for a caller that left. A write
        some batch already took commits or fails with it, unanswered.
        """
        with self._mutex:
            if entry.state == _LEAD:
                self._queue.popleft()  # this entry, at the head
                if self._queue:
                    following = self._queue[0]
                    following.state = _LEAD
                    following.wake.release()
                else:
                    self._leading = False
            elif entry.state == _WAITING and entry in self._queue:
                self._queue.remove(entry)

    def _lead(self, batch: list[Pending[Any]], own: Pending[Any], feed: Feed | None) -> None:
        """Commit ``batch`` (and what ``feed`` adds); hand the lead on; wake the followers it settled."""
        try:
            self._commit(batch, feed)
        except BaseException:
            with self._mutex:
                # Nothing of the batch was committed: back to the head of the queue.
                for entry in reversed(batch):
                    if entry.state != _DONE and entry is not own:
                        self._queue.appendleft(entry)
            self._hand_over(batch)
            self._wake(batch, own)
            raise
        self._hand_over(batch)
        self._wake(batch, own)

    def _patience(self) -> Callable[[], bool] | None:
        """Return how a new leader lingers for the callers the last batch released (see the class)."""
        expected, since, budget = self._released, self._released_at, self._commit_seconds / 2
        if expected <= 1 or budget <= 0:
            return None
        deadline = time.perf_counter() + budget

        def linger() -> bool:
            with self._mutex:
                if self._arrivals - since >= expected - 1:
                    return False
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                if not self._queue:
                    self._arrival.wait(left)  # until the next write arrives (no spinning)
                return True

        return linger

    def _commit(self, batch: list[Pending[Any]], feed: Feed | None) -> None:
        try:
            conn, driver = self._connections.take()
        except DRIVER_ERRORS as exc:
            _settle_all(batch, exc)
            return
        try:
            fine = commit_batch(conn, batch, driver, feed)
        except BaseException:
            self._connections.drop(conn, driver)
            raise
        if fine:
            self._connections.give(conn, driver)
        else:
            self._connections.drop(conn, driver)
        self.figures.count(len(batch))
        if feed is not None and feed.commit_seconds:
            self._commit_seconds = feed.commit_seconds

    def _hand_over(self, batch: list[Pending[Any]] | None) -> None:
        """Give the lead to the first follower in the queue, or give it up (``batch``: None for one alone)."""
        with self._mutex:
            self._released = 1 if batch is None else sum(1 for entry in batch if entry.state == _DONE)
            self._released_at = self._arrivals
            if not self._queue:
                self._leading = False
                return
            following = self._queue[0]
            following.state = _LEAD
        following.wake.release()

    @staticmethod
    def _wake(batch: list[Pending[Any]], own: Pending[Any]) -> None:
        for entry in batch:
            if entry is not own and entry.state == _DONE:
                entry.wake.release()


# -- asyncio ----------------------------------------------------------------------------------------------


class AsyncGroupCommit:
    """The write queue of one asyncio store: tasks await futures, one drainer task commits the batches.

    A task cancelled while its write still waits in the queue takes it out (it
    is never run); once its batch started, the write commits or fails with the
    batch, and only the answer is lost.
    """

    __slots__ = ("_drainer", "_engine", "_queue", "figures")

    def __init__(self, engine: AsyncEngine) -> None:
        """Commit on connections of ``engine``."""
        self._engine = engine
        self._queue: deque[Pending[Any]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.figures = CommitFigures()

    async def run(self, call: Call[T] | Op[T]) -> T:
        """Run a write in the next transaction; return once the commit holding it returned."""
        loop = asyncio.get_running_loop()
        entry: Pending[T] = Pending(call)
        entry.future = loop.create_future()
        self._queue.append(entry)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await entry.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                entry = self._queue.popleft()
                if _abandoned(entry):
                    continue  # a cancelled waiter's write that no batch took: never run
                # Others waiting: the batch takes them, and those that come while it
                # runs; a task alone runs its write alone, without savepoints.
                shared = self._queue and isinstance(entry.call, Op)
                feed = Feed(self._queue, None, entry) if shared else None
                await self._commit([entry], feed)
        except BaseException:
            # The drainer itself was cancelled (its loop is closing): nobody will
            # commit what still waits, so its waiters are cancelled too.
            while self._queue:
                future = self._queue.popleft().future
                if future is not None and not future.done():
                    future.cancel()
            raise
        finally:
            self._drainer = None

    async def _commit(self, batch: list[Pending[Any]], feed: Feed | None) -> None:
        try:
            async with self._engine.connect() as conn:
                await conn.run_sync(commit_batch, batch, None, feed)
        except Exception as exc:  # the connection could not be had, or closed
            for entry in batch:
                if entry.state != _DONE:
                    entry.error, entry.state = _typed(exc, entry.call), _DONE
        finally:
            self.figures.count(len(batch))
            for entry in batch:
                future = entry.future
                assert future is not None
                if future.done():
                    continue
                if entry.state != _DONE:
                    future.cancel()  # interrupted before its commit: nothing was committed
                elif entry.error is not None:
                    future.set_exception(entry.error)
                else:
                    future.set_result(entry.result)
