"""A frozen PostgreSQL server, or a frozen host, holds nothing forever (SPEC §6).

A server stopped with SIGSTOP keeps its kernel acknowledging TCP, so no
network timeout notices it: ``call_timeout`` (``codemode_store/deadline.py``)
must end every call, and the same store must work once it thaws. These tests
freeze a throwaway cluster of their own (``scripts/pg_cluster.py``), never the
shared test server; they need PostgreSQL's server programs and skip with one
line without them (a failure under ``CI=true``). A host stopped inside a
transaction is a real child process, stopped while it holds a row lock; the
test server's ``idle_in_transaction_session_timeout`` ends its session.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url
from support.server_programs import LIVENESS, returns_within

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.aio import AsyncObservationStore
from codemode_store.cli_support.inspection import iter_cells
from codemode_store.deadline import DEFAULT_CALL_TIMEOUT, MIN_CALL_TIMEOUT
from codemode_store.dialects import postgres_connect_args
from codemode_store.errors import DatabaseUnavailable, InvalidInput
from codemode_store.store import StoreSession
from scripts.pg_cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent

#: Short enough for a quick test, and psycopg's shortest connect timeout.
CALL_TIMEOUT = 2.0


@pytest.mark.parametrize("bad", [1, 1.99, 0, -5, math.nan, math.inf, True, "30", None, 10**6])
def test_call_timeout_is_validated_before_anything_is_opened(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(InvalidInput, match="call_timeout"):
        ObservationStore.open(path, call_timeout=bad)  # type: ignore[arg-type]
    assert not path.exists()


def test_call_timeout_is_accepted_on_sqlite_too(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "s.db", call_timeout=MIN_CALL_TIMEOUT) as store:
        store.session("s").create_cell("c")


def test_call_timeout_bounds_idle_transactions_and_new_connections() -> None:
    ours = postgres_connect_args(make_url("postgresql+psycopg://u:p@h/db"), 5.0)
    assert f"idle_in_transaction_session_timeout={round(DEFAULT_CALL_TIMEOUT * 1000)}" in ours["options"]
    short = postgres_connect_args(make_url("postgresql+psycopg://u:p@h/db?connect_timeout=60"), 5.0, 2.5)
    assert "idle_in_transaction_session_timeout=2500" in short["options"]
    # The URL's connect timeout wins, but only up to call_timeout.
    assert short["connect_timeout"] == 2 and short["tcp_user_timeout"] == 2000


def _freeze_call(call: object) -> DatabaseUnavailable:
    raised = returns_within(LIVENESS, call)  # type: ignore[arg-type]
    assert isinstance(raised, DatabaseUnavailable), raised
    return raised


@pytest.mark.slow
def test_a_frozen_server_gives_unavailable_within_call_timeout_then_the_same_store_works(
    cluster: Cluster,
) -> None:
    with ObservationStore.open(cluster.url, call_timeout=CALL_TIMEOUT) as store:
        s = store.session("frozen")
        s.create_cell("c")
        assert s.begin("c", 0) is None
        s.record("c", 0, Outcome.yielded([TextItem("before")]))
        assert s.get("c", 0) is not None  # a reader connection is kept open too

        pids = cluster.freeze()
        try:
            # On the open connections (the writer's, the reader's): only the
            # client-side deadline can end them.
            for call in (lambda: s.begin("c", 1), lambda: s.get("c", 0)):
                raised = _freeze_call(call)
                assert "call_timeout (2 s)" in str(raised)
                assert raised.session_id == "frozen" and raised.cell_id == "c"
            # New connections: the connect timeout, at most call_timeout.
            _freeze_call(store.pending)
            _freeze_call(lambda: ObservationStore.open(cluster.url, call_timeout=CALL_TIMEOUT))
        finally:
            cluster.thaw(pids)

        # The frozen server had received the begin before its connection was
        # cut, and may have run it when it thawed (a lost acknowledgement, as in
        # docs/postgresql-failures.md): either way the store is whole and answers.
        observation = s.get("c", 0)
        assert observation is not None
        if [o.generation for o in store.pending() if o.session_id == "frozen"] == [1]:
            assert observation.state == "released"  # begin(1) acknowledged generation 0
        else:
            assert observation.outcome == Outcome.yielded([TextItem("before")])
            assert s.begin("c", 1) is None
        s.record("c", 1, Outcome.completed([TextItem("after")]))
        assert s.release("c", 1) is True


@pytest.mark.slow
def test_a_frozen_server_ends_an_asyncio_call_too(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with AsyncObservationStore.open(cluster.url, call_timeout=CALL_TIMEOUT) as store:
            s = store.session("frozen-async")
            await s.create_cell("c")
            pids = cluster.freeze()
            try:
                with pytest.raises(DatabaseUnavailable, match="call_timeout"):
                    await asyncio.wait_for(s.get("c", 0), LIVENESS)
            finally:
                cluster.thaw(pids)
            assert await s.begin("c", 0) is None

    asyncio.run(scenario())


_HOLDER = """
import os, signal, sys
from sqlalchemy import text
from codemode_store import ObservationStore
from codemode_store.errors import StoreError

store = ObservationStore.open(sys.argv[1], call_timeout=float(sys.argv[2]))

def hold(conn):
    conn.execute(text("SELECT 1 FROM cells WHERE session_id = 'held' AND cell_id = 'c' FOR UPDATE"))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # a host frozen inside its transaction

try:
    store.write(hold)
    print("committed", flush=True)
except StoreError as exc:
    print(type(exc).__name__, flush=True)
"""


def _wait_stopped(pid: int) -> None:
    deadline = time.monotonic() + LIVENESS
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the holder never stopped"
        time.sleep(0.01)


@pytest.mark.postgres
def test_a_host_frozen_inside_a_transaction_holds_row_locks_only_until_the_bound(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url, busy_timeout=LIVENESS / 2, call_timeout=LIVENESS) as store:
        s = store.session("held")
        s.create_cell("c")
        with subprocess.Popen(
            [sys.executable, "-c", _HOLDER, postgres_url, str(CALL_TIMEOUT)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ) as holder:
            _hold_and_take_over(s, holder)
        s.record("c", 0, Outcome.completed([TextItem("the live host's answer")]))


def _hold_and_take_over(s: StoreSession, holder: subprocess.Popen[str]) -> None:
    """Take the cell's row from a holder stopped inside its transaction; then thaw it."""
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        _wait_stopped(holder.pid)
        # The holder's session idles in its transaction, the cell's row
        # locked; the server ends that session after call_timeout, and this
        # begin (which needs the row) gets it long before its lock timeout
        # (LIVENESS / 2, which would raise DatabaseBusy).
        assert s.begin("c", 0) is None
        holder.send_signal(signal.SIGCONT)
        # The thawed host's transaction is gone: its commit fails, typed.
        assert holder.stdout.readline().strip() == "DatabaseUnavailable"
        assert holder.wait(LIVENESS) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.send_signal(signal.SIGCONT)
            holder.wait()


@pytest.mark.postgres
def test_a_listing_read_slowly_outlives_the_idle_transaction_bound(postgres_url: str) -> None:
    # A listing streams rows to whoever reads them (a pager): its read
    # transaction may idle longer than call_timeout, and holds no row lock.
    with ObservationStore.open(postgres_url, call_timeout=CALL_TIMEOUT) as store:
        s = store.session("listed")
        for cell in ("a", "b"):
            s.create_cell(cell)
        listing = iter_cells(store, session_id="listed")
        first = next(listing)
        time.sleep(CALL_TIMEOUT + 1.0)  # longer than the bound on idle transactions
        assert [first.cell_id, *(c.cell_id for c in listing)] == ["a", "b"]
