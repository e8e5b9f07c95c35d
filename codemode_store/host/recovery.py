"""The reference host's recovery round: ``fail_pending`` once per lease period, in a daemon thread.

A host that shares its store with others recovers what a lost host left
pending (docs/several-hosts.md): any live host may, and the reference host
does it when it starts and then once per lease period, so that a lost host's
generations replay as ``"host H lost: ..."`` within about two lease periods
after its last renewal, plus one.
"""

from __future__ import annotations

import contextlib
import threading

from ..errors import StoreError
from ..store import ObservationStore

__all__ = ["Recovery"]


class Recovery:
    """Call ``store.fail_pending(error_text)`` every ``period`` seconds until :meth:`stop`."""

    def __init__(self, store: ObservationStore, error_text: str, period: float) -> None:
        """Start the thread at once; the first round comes after one period."""
        self._store = store
        self._error_text = error_text
        self._period = period
        self._stopping = threading.Event()
        #: How many generations the rounds failed, all told.
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="codemode-host-recovery", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._period):
            with contextlib.suppress(StoreError):  # the database is away: the next round tries again
                self.failed += self._store.fail_pending(self._error_text)

    def stop(self) -> None:
        """Stop the rounds and wait for one in flight."""
        self._stopping.set()
        self._thread.join()
