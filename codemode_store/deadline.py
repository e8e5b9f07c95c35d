"""A client-side deadline on every PostgreSQL call: ``call_timeout``.

A server process that is frozen (stopped with SIGSTOP, stuck in the kernel)
while its machine's TCP stack keeps acknowledging packets never answers and
never closes: TCP keepalives and ``tcp_user_timeout`` are answered by the
kernel, and ``statement_timeout`` would have to run inside the frozen server.
libpq then waits for the answer forever. So the client bounds each call
itself: the store *arms* a :class:`Deadlines` watch on the connection a call
runs on, and disarms it when the call ends. A watchdog thread, started at the
first call, looks at the armed watches a few times per second; a call still
running near ``call_timeout`` gets its socket shut down (``shutdown(2)``, not
closed: the driver still owns the descriptor). libpq sees the end of the
connection at once, the driver raises, SQLAlchemy invalidates the connection,
and the store raises ``DatabaseUnavailable`` naming ``call_timeout``; the next
call takes another connection, whose connect is bounded by ``connect_timeout``.

The cost on the hot path is no round trip: taking the time, duplicating the
socket's descriptor (so the watchdog can never shut down a descriptor number
that was closed and reused meanwhile) and two set operations under an
uncontended lock.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from typing import Any, Unpack

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from .errors import DatabaseUnavailable, ErrorKey, StoreError
from .validation import check_seconds

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "MIN_CALL_TIMEOUT",
    "Deadlines",
    "Watch",
    "check_call_timeout",
    "deadlines_for",
]

#: Seconds a PostgreSQL call may take before it raises ``DatabaseUnavailable``.
DEFAULT_CALL_TIMEOUT = 30.0
#: The shortest ``call_timeout``: psycopg waits at least 2 s for a new
#: connection (its floor on ``connect_timeout``), so a shorter bound could not
#: hold for a call that has to connect.
MIN_CALL_TIMEOUT = 2.0
#: The longest: PostgreSQL's ``idle_in_transaction_session_timeout`` (set to
#: ``call_timeout``) is a 32-bit count of milliseconds.
MAX_CALL_TIMEOUT = 86_400.0
#: How often the watchdog looks at most (seconds); shorter for short timeouts.
_LONGEST_TICK = 0.25


def check_call_timeout(call_timeout: object) -> float:
    """Return ``call_timeout`` as seconds, or raise ``InvalidInput`` if it is not usable."""
    return check_seconds(call_timeout, "call_timeout", MIN_CALL_TIMEOUT, MAX_CALL_TIMEOUT)


def deadlines_for(url: URL, call_timeout: object) -> Deadlines | None:
    """Return the watchdog of a store on ``url``: PostgreSQL's, or ``None`` (only a server can freeze)."""
    if url.get_backend_name() != "postgresql":
        return None
    return Deadlines(check_call_timeout(call_timeout))


class Watch:
    """One armed call: the duplicate of its socket's descriptor and when to cut it."""

    __slots__ = ("cut_at", "fd", "fired")

    def __init__(self, fd: int, cut_at: float) -> None:
        self.fd = fd
        self.cut_at = cut_at
        #: Whether the watchdog shut the socket down (the call ran out of time).
        self.fired = False


class Deadlines:
    """Shut down the connection of any PostgreSQL call still running at its deadline."""

    __slots__ = ("__weakref__", "_armed", "_lock", "_margin", "_stop", "_thread", "_tick", "call_timeout")

    def __init__(self, call_timeout: float) -> None:
        """Bound each armed call to ``call_timeout`` seconds from the moment it started."""
        self.call_timeout = call_timeout
        self._tick = min(_LONGEST_TICK, call_timeout / 20)
        # Cut early enough that the watchdog's tick and the driver's own
        # raising both fit in the bound.
        self._margin = 2 * self._tick
        self._armed: set[Watch] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, conn: Connection, started: float) -> Watch | None:
        """Watch the call that runs on ``conn`` and started at ``started`` (``time.monotonic()``).

        Returns ``None`` when the connection has no socket to watch (already
        broken: the call's first statement fails on its own).
        """
        try:
            fd = os.dup(conn.connection.driver_connection.pgconn.socket)  # type: ignore[union-attr]
        except Exception:
            return None
        watch = Watch(fd, started + self.call_timeout - self._margin)
        with self._lock:
            self._armed.add(watch)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=_watchdog, args=(weakref.ref(self),), name="codemode-store-deadlines", daemon=True
                )
                self._thread.start()
        return watch

    def disarm(self, watch: Watch | None) -> bool:
        """End the watch of a call that ended; return whether its deadline cut it."""
        if watch is None:
            return False
        with self._lock:
            # Under the lock: the watchdog never shuts down a descriptor closed here.
            self._armed.discard(watch)
            os.close(watch.fd)
        return watch.fired

    def cut_overdue(self) -> int:
        """Shut down the socket of every armed call past its deadline; return how many (the watchdog does)."""
        now = time.monotonic()
        cut = 0
        with self._lock:
            for watch in self._armed:
                if not watch.fired and watch.cut_at <= now:
                    watch.fired = True
                    _shut_down(watch.fd)
                    cut += 1
        return cut

    def overdue(self, exc: BaseException, **key: Unpack[ErrorKey]) -> StoreError:
        """Return the error of a call whose deadline cut it (``exc``: what the driver raised then)."""
        original = getattr(exc, "orig", None) or exc
        words = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
        return DatabaseUnavailable(
            f"database error: the database server gave no answer within call_timeout "
            f"({self.call_timeout:g} s), so the connection was closed: {words} (retry once it answers)",
            **key,
        )

    def close(self) -> None:
        """Stop the watchdog; calls made afterwards are not watched."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _shut_down(fd: int) -> None:
    """Shut down both directions of the socket behind ``fd`` (which stays open)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more: the call ends on its own
    finally:
        sock.detach()


def _watchdog(ref: weakref.ReferenceType[Deadlines]) -> None:
    """Cut overdue calls every tick until the deadlines are closed or dropped."""
    while True:
        deadlines: Any = ref()
        if deadlines is None:
            return
        stop, tick = deadlines._stop, deadlines._tick
        del deadlines  # hold no reference while waiting: a dropped store ends the thread
        if stop.wait(tick):
            return
        deadlines = ref()
        if deadlines is None:
            return
        deadlines.cut_overdue()
        del deadlines
