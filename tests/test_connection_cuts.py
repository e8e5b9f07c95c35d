"""Connections cut mid-operation (a TCP proxy dropping them at random points): all or nothing.

The store talks to the test server through ``benchmarks/tcp_proxy.py``, which
cuts each connection after a seeded random number of chunks: before a request
reaches the server, mid-transaction, or after the server committed but before
its answer came back. Every cut call raises ``DatabaseUnavailable`` and is
retried, with the crash campaign's plan and the server-loss campaign's retry
rules. A retried call must get the rule's answer (never a second run); replays
and releases asked through the cutting proxy must answer as the rules say; and
the store must hold exactly what the acknowledged calls made it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import make_url

from benchmarks.tcp_proxy import TcpProxy
from codemode_store import Observation, ObservationStore
from codemode_store.errors import AlreadyReleased, DatabaseUnavailable
from codemode_store.store import StoreSession
from scripts.crash_campaign import Model, Op, check_session, observe, plan
from scripts.server_loss_campaign import _apply

pytestmark = pytest.mark.postgres

T = TypeVar("T")
STEPS = 250
#: A bound on the retries of one call: a store that cannot recover fails the test.
MAX_ATTEMPTS = 50


class Retrier:
    """Run calls again after each ``DatabaseUnavailable``; count the cuts seen."""

    def __init__(self) -> None:
        self.cuts = 0
        self.found_lost_commits = 0

    def __call__(self, call: Callable[[bool], T]) -> T:
        """Return ``call(retry)``, retrying while the connection is cut."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                return call(attempt > 0)
            except DatabaseUnavailable:
                self.cuts += 1
        raise AssertionError(f"still cut after {MAX_ATTEMPTS} attempts")


def _replay(retrying: Retrier, s: StoreSession, op: Op, request: object) -> Observation | None:
    assert op.generation is not None
    return retrying(lambda _retry: s.begin(op.cell, op.generation, request))  # type: ignore[arg-type]


def _run_host_loop(url: str, retrying: Retrier, seed: int) -> tuple[list[Op], list[str]]:
    """Run STEPS steps of the plan with retries, asking replays on the way; return steps and wrong answers."""
    wrong: list[str] = []
    ops = list(itertools.islice(plan(seed), STEPS))
    requests: dict[tuple[str, int | None], object] = {}
    store = retrying(lambda _retry: ObservationStore.open(url))
    with store:
        s = store.session("cut")
        for op in ops:
            if retrying(lambda retry, op=op: _apply(s, op, retry)):  # type: ignore[misc]
                retrying.found_lost_commits += 1
            key = (op.cell, op.generation)
            if op.action == "begin":
                requests[key] = op.request
            elif op.action in ("record", "fail"):
                # Core asks again for an answered generation: the same answer, never a run.
                replay = _replay(retrying, s, op, requests[key])
                if replay is None:
                    wrong.append(f"{key}: a replay request was told to run the cell again")
                elif op.outcome is not None and replay.outcome != op.outcome:
                    wrong.append(f"{key}: the replay differs from the recorded outcome")
                elif op.error_text is not None and replay.error_text != op.error_text:
                    wrong.append(f"{key}: the replayed failure differs")
            elif op.action == "release":
                try:
                    _replay(retrying, s, op, requests[key])
                    wrong.append(f"{key}: a released generation was replayed")
                except AlreadyReleased:
                    pass
    return ops, wrong


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 17])
def test_cut_connections_lose_nothing_and_never_run_twice(postgres_url: str, seed: int) -> None:
    target = make_url(postgres_url)
    with TcpProxy(str(target.host), int(target.port or 5432)) as proxy:
        through = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        # The schema first, uncut: its creation is covered by the server-loss tests.
        ObservationStore.open(through).close()
        proxy.drop_randomly(2, 80, seed=seed)
        retrying = Retrier()
        ops, wrong = _run_host_loop(through, retrying, seed)
        drops = proxy.counters().drops
        proxy.drop_randomly(None)

    assert wrong == []
    assert drops >= 20 and retrying.cuts >= 20, (drops, retrying.cuts)
    # Some cuts fell after the commit and before its answer: the retry got the rule's answer.
    assert retrying.found_lost_commits > 0, (drops, retrying.cuts)
    model = Model()
    for op in ops:
        model.apply(op)
    with ObservationStore.open(postgres_url) as store:
        assert observe(store, "cut") == model.snapshot()
        assert check_session(store, "cut", ops, model, model) == []
        assert store.check().ok
