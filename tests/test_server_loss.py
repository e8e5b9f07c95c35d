"""PostgreSQL server loss: typed errors while it is down, the same store once it is back, nothing lost.

The restart tests and the bounded campaign crash a throwaway durable cluster of
their own (``scripts/pg_cluster.py``), never the shared test server; they need
PostgreSQL's server programs and skip with one line without them (a failure
under ``CI=true``, where CI installs them). A server that accepts the TCP
connection and never answers is a bare listening socket: no server needed.
"""

from __future__ import annotations

import os
import random
import socket

import pytest
from sqlalchemy import make_url
from support.server_programs import LIVENESS, needs_server_programs, returns_within

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.dialects import DEFAULT_CONNECT_TIMEOUT, postgres_connect_args
from codemode_store.engine import build_engine
from codemode_store.errors import DatabaseError, DatabaseUnavailable, StoreError
from scripts.pg_cluster import KILL_MODES, Cluster
from scripts.server_loss_campaign import run_campaign


def test_open_on_a_server_that_accepts_and_never_answers_raises_unavailable() -> None:
    # The kernel completes the TCP handshake on a listening socket; nobody ever speaks.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"postgresql+psycopg://user:secret@127.0.0.1:{silent.getsockname()[1]}/db"
        raised = returns_within(LIVENESS, lambda: ObservationStore.open(url))
    assert isinstance(raised, DatabaseUnavailable), raised
    assert isinstance(raised, DatabaseError) and isinstance(raised, StoreError)
    assert "unreachable" in str(raised) and "timeout" in str(raised)
    assert "secret" not in str(raised)


def test_open_on_a_closed_port_raises_unavailable_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    raised = returns_within(
        LIVENESS, lambda: ObservationStore.open(f"postgresql+psycopg://u:p@127.0.0.1:{port}/db")
    )
    assert isinstance(raised, DatabaseUnavailable), raised
    assert "refused" in str(raised)


def test_a_connect_timeout_in_the_url_wins_and_sets_the_network_bounds() -> None:
    ours = postgres_connect_args(make_url("postgresql+psycopg://u:p@h/db"), busy_timeout=5.0)
    assert ours["connect_timeout"] == DEFAULT_CONNECT_TIMEOUT
    assert ours["tcp_user_timeout"] == DEFAULT_CONNECT_TIMEOUT * 1000
    assert ours["keepalives"] == 1
    given = postgres_connect_args(
        make_url("postgresql+psycopg://u:p@h/db?connect_timeout=2"), busy_timeout=5.0
    )
    assert "connect_timeout" not in given  # the URL's own reaches the driver
    assert given["keepalives_idle"] == 2 and given["tcp_user_timeout"] == 2000
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"postgresql+psycopg://u:p@127.0.0.1:{silent.getsockname()[1]}/db?connect_timeout=2"
        raised = returns_within(LIVENESS, lambda: ObservationStore.open(url))
    assert isinstance(raised, DatabaseUnavailable), raised


@pytest.mark.slow
@pytest.mark.parametrize("mode", KILL_MODES)
def test_the_same_store_works_again_once_the_server_is_back(cluster: Cluster, mode: str) -> None:
    with ObservationStore.open(cluster.url) as store:
        s = store.session(f"restart-{mode}")
        s.create_cell("c")
        assert s.begin("c", 0) is None
        s.record("c", 0, Outcome.yielded([TextItem("before the crash")]))

        cluster.kill(mode)
        for call in (lambda: s.begin("c", 1), lambda: s.get("c", 0), store.pending):
            raised = returns_within(LIVENESS, call)
            assert isinstance(raised, DatabaseUnavailable), raised
            assert raised.session_id in (s.session_id, None)
        cluster.restart()

        # No failed call once the server is back: the dead pooled connections
        # are found at checkout and replaced, without a ping.
        observation = s.get("c", 0)
        assert observation is not None and observation.outcome == Outcome.yielded(
            [TextItem("before the crash")]
        )
        assert s.begin("c", 1) is None
        s.record("c", 1, Outcome.completed([TextItem("after")]))
        assert s.release("c", 1) is True


@pytest.mark.slow
def test_a_server_restarted_while_the_store_was_idle_costs_no_failed_call(cluster: Cluster) -> None:
    with ObservationStore.open(cluster.url) as store:
        s = store.session("idle-restart")
        s.create_cell("c")
        cluster.kill("immediate")
        cluster.restart()
        assert s.begin("c", 0) is None
        assert [o.generation for o in store.pending() if o.session_id == "idle-restart"] == [0]


def test_no_ping_before_each_checkout() -> None:
    engine = build_engine(make_url("postgresql+psycopg://u:p@127.0.0.1:1/db"))
    try:
        assert engine.pool._pre_ping is False
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_bounded_campaign_loses_nothing_and_never_hangs() -> None:
    needs_server_programs()
    seed = random.Random(os.getpid()).randrange(2**32)
    report = run_campaign(4, seed=seed, up=(0.3, 0.8), down=(0.0, 0.5))
    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    assert sum(report.kills.values()) == 4 and set(report.kills) == set(KILL_MODES)
    assert report.settings == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    assert report.operations_verified > 50, report
    assert report.failed_calls > 0, report  # the hosts did run into the dead server, and retried
    assert set(report.errors) == {"DatabaseUnavailable"}
