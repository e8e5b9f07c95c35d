"""A loopback TCP proxy that counts round trips, adds latency and cuts connections.

Put it between a client and a server (PostgreSQL, say) to count the client's
network round trips, to make every answer slower, or to cut connections at
chosen or random points::

    from benchmarks.tcp_proxy import TcpProxy

    with TcpProxy("127.0.0.1", 5432) as proxy:          # listens on 127.0.0.1:proxy.port
        url = make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
        ...connect through url...
        proxy.reset()                                   # zero the counters
        ...run statements...
        proxy.counters().round_trips                    # round trips since the reset
        proxy.delay_ms = 1.0                            # every server->client chunk 1 ms late
        proxy.drop_all()                                # cut every open connection now
        proxy.drop_randomly(1, 40, seed=7)              # cut each connection after 1..40 chunks
        proxy.drop_randomly(None)                       # stop cutting
        proxy.stall = True                              # hold all traffic: a silent server

**Round trip**: counted each time the client sends after the server has
answered, per connection; the first client write of a connection counts as one.
A request split over several writes, or an answer over several chunks, is still
one round trip, so a given sequence of statements gives the same count every run.

**Drops** are abrupt: both sockets are closed with ``SO_LINGER`` 0 (an RST), the
chunk at which a random drop falls is not forwarded, so a cut can land before a
request reaches the server or after the server acted but before its answer
arrived. Random drop points are drawn from a ``random.Random(seed)``: one per
connection, a number of chunks counted in both directions.

**Stall** keeps connections open and accepts new ones, but forwards nothing
until it is cleared (held data is then forwarded in order): a server that
accepts the TCP connection and never answers.

CLI: ``python -m benchmarks.tcp_proxy TARGET_HOST:PORT [--port N] [--delay-ms MS]
[--drop-min N --drop-max M --seed S]`` prints the port it listens on, then the
counters when interrupted (Ctrl-C).

Threads, not asyncio: the proxy serves synchronous clients in the same process
(psycopg, the store) without needing an event loop of theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType

__all__ = ["Counters", "TcpProxy", "main"]

_CHUNK = 65536
# SO_LINGER on with a zero timeout: close() sends an RST and drops unsent data.
_ABORT_LINGER = struct.pack("ii", 1, 0)


@dataclasses.dataclass(frozen=True)
class Counters:
    """A snapshot of the proxy's counters since the last reset."""

    round_trips: int
    bytes_to_server: int
    bytes_to_client: int
    connections: int
    drops: int


class _Link:
    """One proxied connection: the client's socket, the server's, and their state."""

    def __init__(self, client: socket.socket, server: socket.socket, drop_after: int | None) -> None:
        self.client = client
        self.server = server
        self.drop_after = drop_after
        self.chunks = 0
        self.client_spoke_last = False
        self.closed = False


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port``, counting and cutting.

    Start it with ``start()`` or as a context manager; ``stop()`` closes the
    listener and every connection. All methods are thread-safe.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int = 0,
        delay_ms: float = 0.0,
        drop_min: int | None = None,
        drop_max: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Prepare a proxy to the target; ``port`` 0 picks a free one (see ``drop_randomly``)."""
        self.target = (target_host, target_port)
        self.delay_ms = delay_ms
        self._stall = False
        self._requested_port = port
        self._lock = threading.Lock()
        self._unstalled = threading.Condition(self._lock)
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stopping = False
        self._rng = random.Random(seed)
        self._drop_range: tuple[int, int] | None = None
        self._round_trips = 0
        self._to_server = 0
        self._to_client = 0
        self._connections = 0
        self._drops = 0
        if drop_min is not None:
            self.drop_randomly(drop_min, drop_max if drop_max is not None else drop_min, seed=seed)

    # -- life cycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1)."""
        if self._listener is None:
            raise RuntimeError("the proxy is not started")
        return int(self._listener.getsockname()[1])

    def start(self) -> TcpProxy:
        """Listen and start forwarding; return the proxy itself."""
        listener = socket.create_server(("127.0.0.1", self._requested_port))
        self._listener = listener
        self._stopping = False
        thread = threading.Thread(target=self._accept_loop, args=(listener,), name="tcp-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening, cut every connection and wait for the proxy's threads."""
        with self._lock:
            self._stopping = True
            self._unstalled.notify_all()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        self.drop_all(count=False)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self._listener = None

    def __enter__(self) -> TcpProxy:
        """Start the proxy."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the proxy."""
        self.stop()

    # -- counters and faults ------------------------------------------------------

    def counters(self) -> Counters:
        """Return the counters since the last ``reset``."""
        with self._lock:
            return Counters(
                round_trips=self._round_trips,
                bytes_to_server=self._to_server,
                bytes_to_client=self._to_client,
                connections=self._connections,
                drops=self._drops,
            )

    def reset(self) -> None:
        """Zero the counters; a connection whose client spoke last counts its next request again."""
        with self._lock:
            self._round_trips = self._to_server = self._to_client = 0
            self._connections = self._drops = 0
            for link in self._links:
                link.client_spoke_last = False

    def drop_all(self, *, count: bool = True) -> int:
        """Cut every open connection abruptly (RST both ways); return how many."""
        with self._lock:
            links = [link for link in self._links if not link.closed]
            for link in links:
                self._close(link, count=count)
        return len(links)

    def drop_randomly(self, low: int | None, high: int | None = None, *, seed: int | None = None) -> None:
        """Cut each new connection after a random number of chunks in ``[low, high]``; None stops.

        Connections already open keep the drop point they had. ``seed`` (if
        given) reseeds the generator, so the same seed gives the same points.
        """
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            if low is None:
                self._drop_range = None
                return
            high = low if high is None else high
            if not 1 <= low <= high:
                raise ValueError(f"drop range must satisfy 1 <= low <= high, not {low}..{high}")
            self._drop_range = (low, high)

    @property
    def stall(self) -> bool:
        """Whether all forwarding is held (a silent server); assign to hold or resume."""
        return self._stall

    @stall.setter
    def stall(self, stalled: bool) -> None:
        with self._lock:
            self._stall = stalled
            self._unstalled.notify_all()

    # -- forwarding ---------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _abort(client)  # the target is down: the client sees a reset, as it would
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping:
                    _abort(client)
                    _abort(server)
                    return
                drop_after = self._rng.randint(*self._drop_range) if self._drop_range else None
                link = _Link(client, server, drop_after)
                self._links.append(link)
                self._connections += 1
            for to_server in (True, False):
                thread = threading.Thread(target=self._pump, args=(link, to_server), daemon=True)
                thread.start()
                self._threads.append(thread)
            self._threads = [thread for thread in self._threads if thread.is_alive()]

    def _pump(self, link: _Link, to_server: bool) -> None:
        source, sink = (link.client, link.server) if to_server else (link.server, link.client)
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            if not self._forward(link, to_server, data):
                break
            delay = self.delay_ms
            if not to_server:
                if delay > 0:
                    time.sleep(delay / 1000)
                with self._lock:
                    # Marked at delivery, and before it: once the client has the
                    # answer it may speak at once, and that must count.
                    link.client_spoke_last = False
            try:
                sink.sendall(data)
            except OSError:
                break
        with self._lock:
            self._close(link, count=False)

    def _forward(self, link: _Link, to_server: bool, data: bytes) -> bool:
        """Account for a chunk about to be forwarded; False when the link must end instead."""
        with self._lock:
            while self._stall and not link.closed and not self._stopping:
                self._unstalled.wait()
            if link.closed or not data:
                return False
            link.chunks += 1
            if link.drop_after is not None and link.chunks >= link.drop_after:
                self._close(link, count=True)
                return False
            if to_server:
                self._to_server += len(data)
                if not link.client_spoke_last:
                    self._round_trips += 1
                    link.client_spoke_last = True
            else:
                self._to_client += len(data)
            return True

    def _close(self, link: _Link, *, count: bool) -> None:
        """Cut ``link`` abruptly; the caller holds the lock."""
        if link.closed:
            return
        link.closed = True
        if count:
            self._drops += 1
        for sock in (link.client, link.server):
            _abort(sock)
        self._links.remove(link)
        self._unstalled.notify_all()


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with an RST, waking any thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT_LINGER)
    with contextlib.suppress(OSError):
        # SHUT_RD wakes a blocked recv() on Linux without sending anything.
        sock.shutdown(socket.SHUT_RD)
    sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until interrupted; print its port, then its counters."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tcp_proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("target", help="HOST:PORT to forward to")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay of every server->client chunk")
    parser.add_argument("--drop-min", type=int, help="cut each connection after at least this many chunks")
    parser.add_argument("--drop-max", type=int, help="... and at most this many (default: --drop-min)")
    parser.add_argument("--seed", type=int, help="seed of the random drop points")
    args = parser.parse_args(argv)
    host, _, port_text = args.target.rpartition(":")
    if not host or not port_text.isdigit():
        parser.error(f"target must be HOST:PORT, not {args.target!r}")
    proxy = TcpProxy(
        host,
        int(port_text),
        port=args.port,
        delay_ms=args.delay_ms,
        drop_min=args.drop_min,
        drop_max=args.drop_max,
        seed=args.seed,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with proxy:
        print(f"listening on 127.0.0.1:{proxy.port}, forwarding to {host}:{port_text}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
        print(proxy.counters(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
