"""PostgreSQL: the common path of every operation is one network round trip (counted by a proxy).

The count is deterministic, so it is asserted exactly. psycopg prepares a
statement on the server the fifth time it runs on a connection (one more round
trip, once), so every statement is run more than five times before counting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import make_url

from benchmarks.tcp_proxy import TcpProxy
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.aio import AsyncObservationStore
from codemode_store.errors import NotPending

pytestmark = pytest.mark.postgres

WARM_UP_CELLS = 6
PARTIAL = Outcome.yielded([TextItem("partial " * 50)])
DONE = Outcome.completed([TextItem("done " * 50)])


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """A counting proxy in front of the test server."""
    parsed = make_url(postgres_url)
    with TcpProxy(str(parsed.host), int(parsed.port or 5432)) as running:
        yield running


@pytest.fixture
def proxied_url(postgres_url: str, proxy: TcpProxy) -> str:
    """The URL of the test database, through the proxy."""
    url = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def round_trips(proxy: TcpProxy, action: Callable[[], object]) -> int:
    """Run ``action`` and return how many round trips it made."""
    proxy.reset()
    action()
    return proxy.counters().round_trips


def cell_steps(s: Any, cell: str) -> list[tuple[str, Callable[[], object]]]:
    """The host loop of one cell, then a read of its last generation, then a failed generation."""
    return [
        ("create_cell", lambda: s.create_cell(cell)),
        ("begin 0", lambda: s.begin(cell, 0)),
        ("record yielded", lambda: s.record(cell, 0, PARTIAL)),
        ("begin 1", lambda: s.begin(cell, 1)),
        ("record completed", lambda: s.record(cell, 1, DONE)),
        ("release", lambda: s.release(cell, 1)),
        ("get", lambda: s.get(cell, 1)),
        ("create_cell 2", lambda: s.create_cell(cell + "-f")),
        ("begin 0 of 2", lambda: s.begin(cell + "-f", 0)),
        ("fail", lambda: s.fail(cell + "-f", 0, "the runtime went away")),
    ]


def test_each_operation_of_the_host_loop_is_one_round_trip(proxied_url: str, proxy: TcpProxy) -> None:
    with ObservationStore.open(proxied_url) as store:
        s = store.session("s")
        for n in range(WARM_UP_CELLS):
            for _name, step in cell_steps(s, f"warm-{n}"):
                step()
        counts = {name: round_trips(proxy, step) for name, step in cell_steps(s, "c")}
        assert counts == dict.fromkeys(counts, 1)
        observation = s.get("c", 1)
        assert observation is not None and observation.state == "released"
        failed = s.get("c-f", 0)
        assert failed is not None and failed.error_text == "the runtime went away"


def test_the_asyncio_store_takes_one_round_trip_per_operation_too(proxied_url: str, proxy: TcpProxy) -> None:
    async def scenario() -> dict[str, int]:
        async with AsyncObservationStore.open(proxied_url) as store:
            s = store.session("s")
            counts: dict[str, int] = {}
            for n in range(WARM_UP_CELLS + 1):
                counts = {}
                for name, step in cell_steps(s, f"c{n}"):
                    proxy.reset()
                    await step()
                    counts[name] = proxy.counters().round_trips
            return counts

    counts = asyncio.run(scenario())
    assert counts == dict.fromkeys(counts, 1)


def test_rare_paths_fall_back_to_the_locked_transaction(proxied_url: str, proxy: TcpProxy) -> None:
    with ObservationStore.open(proxied_url) as store:
        s = store.session("s")
        for n in range(WARM_UP_CELLS):
            for _name, step in cell_steps(s, f"warm-{n}"):
                step()
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, PARTIAL)
        # A replay: the one statement refuses, the transaction reads the answer
        # (BEGIN with the locking read, the read, COMMIT).
        replayed: list[Any] = []
        replay_trips = round_trips(proxy, lambda: replayed.append(s.begin("c", 0)))
        assert replayed[0] is not None and replayed[0].outcome == PARTIAL
        assert replay_trips > 1
        # A rejection: nothing changed, the error is the rule's.
        with pytest.raises(NotPending):
            s.record("c", 1, PARTIAL)
        # An idempotent retry of a record is the same rare path, and succeeds.
        s.record("c", 0, PARTIAL)
        assert [o.state for o in s.history("c")] == ["retained"]
