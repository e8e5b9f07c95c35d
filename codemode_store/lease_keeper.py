"""Keeping a host's lease: renewed in the background every ``lease_seconds / 3``.

A store opened with a host id renews its lease (one ``UPDATE`` of its row in
``hosts``, by the database's clock) from a daemon thread (:class:`LeaseThread`,
the sync store) or an asyncio task (:class:`LeaseTask`, the asyncio store):
at most one write per period, whatever the store's traffic. A renewal that
fails (the database is away) is retried at the next period; one that finds
the incarnation superseded stops the renewals, for good. Both stop cleanly on
``close()``: an interrupted wait ends at once, a renewal in flight finishes
(it is bounded by the store's timeouts).

The thread holds the store only weakly: a store dropped without ``close()``
is still collected, and its thread then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable

from .errors import StoreError

__all__ = ["RENEWALS_PER_LEASE", "LeaseTask", "LeaseThread"]

#: How many times a lease is renewed within its length.
RENEWALS_PER_LEASE = 3


class LeaseThread:
    """A daemon thread that calls ``renew`` every ``interval`` seconds until :meth:`stop`.

    ``renew`` is a bound method of the store, held weakly; it returns ``False``
    when there is nothing left to renew (the incarnation was superseded).
    """

    def __init__(self, renew: Callable[[], bool], interval: float, name: str) -> None:
        """Prepare the thread; :meth:`start` starts it."""
        self._renew = weakref.WeakMethod(renew)
        self._interval = interval
        self._stopping = threading.Event()
        #: How many renewals were written (for the benchmark and the tests).
        self.renewals = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start renewing."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            renew = self._renew()
            if renew is None:  # the store was collected
                return
            try:
                if not renew():
                    return
                self.renewals += 1
            except StoreError:
                pass  # the database is away: the next period tries again
            finally:
                del renew

    def stop(self) -> None:
        """Stop renewing and wait for the thread (a renewal in flight finishes first)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class LeaseTask:
    """An asyncio task that awaits ``renew()`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, renew: Callable[[], Awaitable[bool]], interval: float) -> None:
        """Start the task on the running loop."""
        self._renew = renew
        self._interval = interval
        self._stopping = asyncio.Event()
        #: How many renewals were written.
        self.renewals = 0
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="codemode-store-lease")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
                return
            try:
                if not await self._renew():
                    return
                self.renewals += 1
            except StoreError:
                pass  # the database is away: the next period tries again

    async def stop(self) -> None:
        """Stop renewing and wait for the task (a renewal in flight finishes first)."""
        self._stopping.set()
        await self._task
