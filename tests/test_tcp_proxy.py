"""The loopback TCP proxy of benchmarks/tcp_proxy.py, against the real PostgreSQL server."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading

import psycopg
import pytest
from sqlalchemy import make_url

from benchmarks.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

#: PostgreSQL's SSLRequest message: length 8, code 80877103; the server answers one byte.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _connect(url: str, proxy: TcpProxy) -> psycopg.Connection[tuple[object, ...]]:
    """Open an autocommit psycopg connection to ``url``'s database through ``proxy``."""
    parsed = make_url(url)
    return psycopg.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
        connect_timeout=10,
    )


def _target(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return str(parsed.host), int(parsed.port or 5432)


def _two_selects(url: str) -> tuple[int, int]:
    """Return the round trips of connecting, and of two autocommit ``SELECT 1`` after it.

    A proxy of its own each time: the Terminate message of a closed connection
    is a client write too, and could land in the next count.
    """
    with TcpProxy(*_target(url)) as proxy, _connect(url, proxy) as conn:
        connecting = proxy.counters().round_trips
        proxy.reset()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        counters = proxy.counters()
        assert counters.bytes_to_server > 0 and counters.bytes_to_client > 0
        assert counters.drops == 0
        return connecting, counters.round_trips


def test_round_trips_of_known_statements_are_counted_the_same_every_run(postgres_url: str) -> None:
    runs = [_two_selects(postgres_url) for _ in range(3)]
    assert [selects for _connecting, selects in runs] == [2, 2, 2]
    # Connecting takes several (startup, authentication exchanges): the same each time.
    assert len({connecting for connecting, _selects in runs}) == 1
    assert runs[0][0] >= 2


def test_a_transaction_counts_begin_statement_and_commit(postgres_url: str) -> None:
    with TcpProxy(*_target(postgres_url)) as proxy, _connect(postgres_url, proxy) as conn:
        proxy.reset()
        with conn.transaction():
            conn.execute("SELECT 1")
        assert proxy.counters().round_trips == 3
        assert proxy.counters().connections == 0  # counted since the reset


def test_drop_all_cuts_an_open_connection_and_new_ones_work(postgres_url: str) -> None:
    with TcpProxy(*_target(postgres_url)) as proxy:
        conn = _connect(postgres_url, proxy)
        try:
            assert proxy.drop_all() == 1
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        finally:
            conn.close()
        assert proxy.counters().drops == 1
        with _connect(postgres_url, proxy) as again:
            assert again.execute("SELECT 2").fetchone() == (2,)
        assert proxy.counters().connections == 2


def test_random_drops_are_seeded_and_cut_at_the_drawn_chunk(postgres_url: str) -> None:
    def outcomes(seed: int) -> tuple[list[int], int]:
        """Per connection, how many statements ran before the cut; and the drops counted."""
        ran = []
        with TcpProxy(*_target(postgres_url), drop_min=2, drop_max=30, seed=seed) as proxy:
            for _ in range(6):
                done = -1  # cut while connecting
                try:
                    with _connect(postgres_url, proxy) as conn:
                        done = 0
                        while done < 20:
                            conn.execute("SELECT 1")
                            done += 1
                except psycopg.OperationalError:
                    pass
                ran.append(done)
            return ran, proxy.counters().drops

    first, drops = outcomes(seed=11)
    assert (first, drops) == outcomes(seed=11)
    assert drops == sum(1 for done in first if done < 20) > 0


def test_a_stalled_proxy_holds_answers_until_released(postgres_url: str) -> None:
    with TcpProxy(*_target(postgres_url)) as proxy, _connect(postgres_url, proxy) as conn:
        proxy.stall = True
        answers: list[object] = []
        worker = threading.Thread(target=lambda: answers.append(conn.execute("SELECT 3").fetchone()))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and answers == []
        proxy.stall = False
        worker.join(10)
        assert answers == [(3,)]


def test_the_cli_prints_its_port_and_forwards(postgres_url: str) -> None:
    host, port = _target(postgres_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.tcp_proxy", f"{host}:{port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        listening = int(line.split("127.0.0.1:")[1].split(",")[0])
        with socket.create_connection(("127.0.0.1", listening), timeout=10) as sock:
            sock.sendall(SSL_REQUEST)
            assert sock.recv(1) in (b"S", b"N")  # the server's answer came through
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "round_trips=1," in out and "connections=1," in out
