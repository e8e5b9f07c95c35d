"""Many hosts on one store (docs/several-hosts.md): host ids, incarnations, leases, fencing, recovery.

Every test runs on both backends. Hosts are real stores (threads of this
process) or, for a host that dies, a real child process killed with SIGKILL.
A "paused" host (one whose lease ran out while it holds rows) is made by
moving its lease back in the table, behind the store's back, as a host stopped
for minutes would leave it; the waits are polls with a bound, never a sleep
that decides the outcome.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from support.cli_runner import cli
from support.tables import dump

from codemode_store import HostInfo, ObservationStore, Outcome, TextItem
from codemode_store.aio import AsyncObservationStore
from codemode_store.cli_support import inspection
from codemode_store.errors import (
    HostFenced,
    InvalidInput,
    NotPending,
    ObservationInProgress,
)
from codemode_store.hosts import RESTARTED_TEXT, lost_text

ROOT = Path(__file__).resolve().parent.parent
ANSWER = Outcome.yielded([TextItem("partial")])
DONE = Outcome.completed([TextItem("done")])


@pytest.fixture
def opened(store_url: str) -> Iterator[Callable[..., ObservationStore]]:
    """Open stores on the test's database (with the options given); all closed at the end."""
    stores: list[ObservationStore] = []

    def open_store(**options: Any) -> ObservationStore:
        store = ObservationStore.open(store_url, **options)
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        store.close()


def begun(store: ObservationStore, session_id: str, cell_id: str) -> None:
    """Create a cell and begin its generation 0 (the store now runs it)."""
    s = store.session(session_id)
    s.create_cell(cell_id)
    assert s.begin(cell_id, 0) is None


def state(store: ObservationStore, session_id: str, cell_id: str, generation: int = 0) -> tuple[Any, ...]:
    """Return (state, error_text, host_id) of one generation."""
    found = store.session(session_id).get(cell_id, generation)
    assert found is not None
    return found.state, found.error_text, found.host_id


def move_lease_back(store_url: str, host_id: str, seconds: float) -> None:
    """Make a host's lease end ``seconds`` ago, behind its store's back (a host paused that long)."""
    url = store_url if "://" in store_url else f"sqlite:///{store_url}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE hosts SET lease_expires_at = lease_expires_at - :back WHERE host_id = :host"),
                {"back": round(seconds * 1_000_000), "host": host_id},
            )
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def by_id(store: ObservationStore) -> dict[str, HostInfo]:
    """Return ``store.hosts()`` keyed by host id."""
    return {info.host_id: info for info in store.hosts()}


# -- identity and incarnations ------------------------------------------------------------------


def test_each_open_of_a_host_id_is_its_next_incarnation(opened: Callable[..., ObservationStore]) -> None:
    first = opened(host_id="worker-1")
    assert (first.host_id, first.incarnation, first.recovered) == ("worker-1", 1, 0)
    first.close()
    again = opened(host_id="worker-1")
    other = opened(host_id="worker-2")
    assert (again.incarnation, other.incarnation) == (2, 1)
    anonymous = opened()
    assert (anonymous.host_id, anonymous.incarnation, anonymous.recovered) == (None, None, 0)
    assert [(h.host_id, h.incarnation) for h in anonymous.hosts()] == [("worker-1", 2), ("worker-2", 1)]


@pytest.mark.parametrize(
    "options",
    [
        {"host_id": ""},
        {"host_id": "x" * 257},
        {"host_id": "a\x00b"},
        {"host_id": "\ud800"},
        {"host_id": 3},
        {"host_id": "w", "lease_seconds": 0},
        {"host_id": "w", "lease_seconds": -1.0},
        {"host_id": "w", "lease_seconds": math.nan},
        {"host_id": "w", "lease_seconds": math.inf},
        {"host_id": "w", "lease_seconds": True},
        {"host_id": "w", "lease_seconds": "30"},
        {"lease_seconds": 10**9},
    ],
    ids=repr,
)
def test_a_bad_host_id_or_lease_is_invalid_input_and_writes_nothing(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "store.db"
    with pytest.raises(InvalidInput, match=r"host_id|lease_seconds"):
        ObservationStore.open(path, **options)
    assert not path.exists()


# -- fail_pending never fails a live host's row -----------------------------------------------------


def test_another_hosts_open_and_fail_pending_leave_a_live_hosts_row(
    opened: Callable[..., ObservationStore],
) -> None:
    a = opened(host_id="A")
    begun(a, "s", "c")
    b = opened(host_id="B")
    assert b.recovered == 0
    assert b.fail_pending() == 0
    anonymous = opened()
    assert anonymous.fail_pending() == 0
    assert state(a, "s", "c") == ("pending", None, "A")
    a.session("s").record("c", 0, ANSWER)
    assert state(a, "s", "c") == ("retained", None, "A")


def test_a_restart_fails_only_its_own_earlier_rows(opened: Callable[..., ObservationStore]) -> None:
    a = opened(host_id="A")
    begun(a, "s", "mine")
    b = opened(host_id="B")
    begun(b, "s", "theirs")
    anonymous = opened()
    begun(anonymous, "s", "anonymous")
    a.close()  # as a killed host would, minus the lease's end (reopened at once)
    again = opened(host_id="A")
    assert (again.incarnation, again.recovered) == (2, 1)
    assert state(again, "s", "mine") == ("failed", RESTARTED_TEXT, "A")
    assert state(again, "s", "theirs") == ("pending", None, "B")
    assert state(again, "s", "anonymous") == ("pending", None, None)
    # The identified store's fail_pending: nothing more (B is live, anonymous rows are not its own).
    assert again.fail_pending() == 0
    # An anonymous store's: the rows begun without a host id, never B's.
    assert anonymous.fail_pending("gone") == 1
    assert state(again, "s", "anonymous") == ("failed", "gone", None)
    assert state(again, "s", "theirs") == ("pending", None, "B")


# -- fencing ------------------------------------------------------------------------------------


def test_a_superseded_incarnation_is_fenced_and_writes_nothing(
    opened: Callable[..., ObservationStore],
) -> None:
    old = opened(host_id="A")
    s_old = old.session("s")
    s_old.create_cell("c")
    assert s_old.begin("c", 0) is None
    s_old.record("c", 0, ANSWER)
    s_old.create_cell("fresh")
    new = opened(host_id="A")
    before = dump(new)
    for cell_id, generation in (("c", 1), ("c", 0), ("fresh", 0)):  # next, replay, first
        with pytest.raises(HostFenced) as raised:
            s_old.begin(cell_id, generation)
        assert (raised.value.host_id, raised.value.incarnation) == ("A", 1)
        assert (raised.value.cell_id, raised.value.generation) == (cell_id, generation)
        assert "superseded by incarnation 2" in str(raised.value)
    assert dump(new) == before
    s_new = new.session("s")
    assert s_new.begin("c", 1) is None  # the current incarnation goes on
    assert state(new, "s", "c", 1) == ("pending", None, "A")


def test_record_or_fail_by_another_host_is_in_progress_naming_it(
    opened: Callable[..., ObservationStore],
) -> None:
    a = opened(host_id="A")
    begun(a, "s", "c")
    begun(a, "s", "closing")
    b = opened(host_id="B")
    anonymous = opened()
    before = dump(a)
    for store in (b, anonymous):
        s = store.session("s")
        attempts: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
            (s.record, ("c", 0, ANSWER)),
            (s.record, ("closing", 0, DONE)),  # a closing outcome: its own statement
            (s.fail, ("c", 0, "no")),
        ]
        for act, args in attempts:
            with pytest.raises(ObservationInProgress, match="under host 'A'") as raised:
                act(*args)
            assert raised.value.host_id == "A"
    assert dump(a) == before  # the closing record's close was undone too
    a.session("s").record("closing", 0, DONE)
    assert state(a, "s", "closing") == ("retained", None, "A")


def test_an_anonymous_row_is_not_a_hosts_to_record(opened: Callable[..., ObservationStore]) -> None:
    anonymous = opened()
    begun(anonymous, "s", "c")
    a = opened(host_id="A")
    with pytest.raises(ObservationInProgress, match="by a store without host id") as raised:
        a.session("s").record("c", 0, ANSWER)
    assert raised.value.host_id is None


def test_a_late_answer_of_a_superseded_incarnation_is_not_pending(
    opened: Callable[..., ObservationStore],
) -> None:
    old = opened(host_id="A")
    begun(old, "s", "c")
    opened(host_id="A")  # recovers generation 0
    with pytest.raises(NotPending, match="failed"):
        old.session("s").record("c", 0, ANSWER)
    with pytest.raises(NotPending, match="failed"):
        old.session("s").fail("c", 0, "late")
    assert state(old, "s", "c") == ("failed", RESTARTED_TEXT, "A")


# -- leases, lost hosts -------------------------------------------------------------------------


def test_a_paused_host_is_lost_and_recovered_by_anyone(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    a = opened(host_id="A", lease_seconds=30.0)
    begun(a, "s", "c")
    b = opened(host_id="B", lease_seconds=30.0)
    move_lease_back(store_url, "A", 59.0)  # lease ended 29 s ago: not yet lost
    assert by_id(b)["A"].live
    assert b.fail_pending() == 0
    move_lease_back(store_url, "A", 2.0)  # 31 s ago: more than a lease period
    assert not by_id(b)["A"].live
    assert b.fail_pending() == 1
    assert state(b, "s", "c") == ("failed", lost_text("A"), "A")
    assert lost_text("A") == "host A lost: the observation was interrupted"
    # The paused host wakes: its late answer is refused; Core saw one answer.
    with pytest.raises(NotPending):
        a.session("s").record("c", 0, ANSWER)


def test_an_anonymous_store_recovers_lost_hosts_too(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    a = opened(host_id="A", lease_seconds=30.0)
    begun(a, "s", "c")
    move_lease_back(store_url, "A", 3600.0)
    assert opened().fail_pending() == 1
    assert state(a, "s", "c") == ("failed", lost_text("A"), "A")


def test_a_killed_host_is_lost_after_two_lease_periods(
    store_url: str, opened: Callable[..., ObservationStore], tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_HOST, store_url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    b = opened(host_id="B", lease_seconds=0.3)
    wait_for(lambda: not by_id(b)["dead"].live)  # 0.3 s of lease, 0.3 s more
    assert b.fail_pending() == 1
    assert state(b, "s", "c") == ("failed", lost_text("dead"), "dead")


_KILLED_HOST = """
import sys, time
from codemode_store import ObservationStore
store = ObservationStore.open(sys.argv[1], host_id="dead", lease_seconds=0.3)
s = store.session("s")
s.create_cell("c")
s.begin("c", 0)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_renewal_racing_a_recovery_is_never_failed(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    a = opened(host_id="A", lease_seconds=30.0)
    begun(a, "s", "c")
    b = opened(host_id="B", lease_seconds=30.0)
    move_lease_back(store_url, "A", 3600.0)  # lost, by the table
    # A's renewal, caught between its UPDATE and its COMMIT (what renew_lease writes).
    url = store_url if "://" in store_url else f"sqlite:///{store_url}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            renewed = conn.execute(
                text("UPDATE hosts SET lease_expires_at = lease_expires_at + :forward WHERE host_id = 'A'"),
                {"forward": 3600 * 1_000_000 + 30_000_000},
            )
            assert renewed.rowcount == 1
            result: list[int] = []
            recovery = threading.Thread(target=lambda: result.append(b.fail_pending()))
            recovery.start()
            recovery.join(0.5)  # it waits for the renewal's lock
            conn.commit()
        recovery.join()
    finally:
        engine.dispose()
    assert result == [0]
    assert state(a, "s", "c") == ("pending", None, "A")
    a.session("s").record("c", 0, ANSWER)


def sqlalchemy_url(store_url: str) -> str:
    """Return the URL of the test's database for a plain SQLAlchemy engine."""
    return store_url if "://" in store_url else f"sqlite:///{store_url}"


def test_a_begin_in_flight_is_seen_by_the_open_that_supersedes_it(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    old = opened(host_id="A")
    old.session("s").create_cell("c")
    engine = create_engine(sqlalchemy_url(store_url))
    try:
        with engine.connect() as conn:
            # What old's begin does, caught before its COMMIT: its host row KEY SHARE-locked
            # (PostgreSQL) or the write lock held (SQLite), the pending row written.
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.execute(text("SELECT 1 FROM hosts WHERE host_id = 'A' AND incarnation = 1"))
            else:
                conn.execute(
                    text("SELECT 1 FROM hosts WHERE host_id = 'A' AND incarnation = 1 FOR KEY SHARE")
                )
            conn.execute(
                text(
                    "INSERT INTO observations (session_id, cell_id, generation, state, begun_at, host_id, "
                    "incarnation) VALUES ('s', 'c', 0, 'pending', 1, 'A', 1)"
                )
            )
            conn.execute(text("UPDATE cells SET last_generation = 0 WHERE cell_id = 'c'"))
            newer: list[ObservationStore] = []
            opening = threading.Thread(target=lambda: newer.append(opened(host_id="A")))
            opening.start()
            opening.join(0.5)  # it waits for the begin's lock
            conn.commit()
        opening.join()
    finally:
        engine.dispose()
    # The open saw the begin's row once it committed, and failed it: nothing is left
    # pending under an incarnation that no process will ever answer for.
    assert newer[0].recovered == 1
    assert state(old, "s", "c") == ("failed", RESTARTED_TEXT, "A")


def test_a_begin_waiting_on_an_open_is_fenced(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    old = opened(host_id="A")
    s = old.session("s")
    s.create_cell("c")
    engine = create_engine(sqlalchemy_url(store_url))
    try:
        with engine.connect() as conn:
            # A newer open of the host id, caught before its COMMIT (what hosts.claim writes).
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT incarnation FROM hosts WHERE host_id = 'A' FOR UPDATE"))
            conn.execute(text("UPDATE hosts SET incarnation = incarnation + 1 WHERE host_id = 'A'"))
            outcome: list[object] = []

            def begin() -> None:
                try:
                    outcome.append(s.begin("c", 0))
                except HostFenced as exc:
                    outcome.append(exc)

            beginning = threading.Thread(target=begin)
            beginning.start()
            beginning.join(0.5)  # it waits for the open's lock
            conn.commit()
        beginning.join()
    finally:
        engine.dispose()
    assert isinstance(outcome[0], HostFenced)  # it re-read the row after the wait
    assert old.pending() == []


def test_the_lease_is_renewed_in_the_background_and_ended_on_close(
    opened: Callable[..., ObservationStore],
) -> None:
    a = opened(host_id="A", lease_seconds=0.3)
    b = opened()
    first = by_id(b)["A"].lease_expires_at
    wait_for(lambda: by_id(b)["A"].lease_expires_at > first)
    threads = {t.name for t in threading.enumerate()}
    assert "codemode-store-lease-A" in threads
    a.close()
    assert "codemode-store-lease-A" not in {t.name for t in threading.enumerate()}
    ended = by_id(b)["A"]
    assert not ended.live  # a closed host is lost at once: its rows may be recovered
    assert by_id(b)["A"] == ended  # and nothing renews it any more


def test_a_store_without_host_id_never_renews_nor_fences(opened: Callable[..., ObservationStore]) -> None:
    anonymous = opened()
    begun(anonymous, "s", "c")
    assert anonymous.hosts() == []
    assert not any(t.name.startswith("codemode-store-lease") for t in threading.enumerate())
    anonymous.session("s").record("c", 0, ANSWER)
    assert state(anonymous, "s", "c") == ("retained", None, None)


# -- what an operator sees ------------------------------------------------------------------------


def test_hosts_lists_incarnation_lease_liveness_and_pending(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    a = opened(host_id="A")
    begun(a, "s", "c1")
    begun(a, "s", "c2")
    b = opened(host_id="B")
    opened(host_id="C").close()
    gone = opened(host_id="D")
    begun(gone, "s", "c3")
    move_lease_back(store_url, "D", 3600.0)
    hosts = b.hosts()
    assert [(h.host_id, h.incarnation, h.live, h.pending) for h in hosts] == [
        ("A", 1, True, 2),
        ("B", 1, True, 0),
        ("C", 1, False, 0),
        ("D", 1, False, 1),
    ]
    assert all(h.lease_expires_at.utcoffset() is not None for h in hosts)
    assert hosts[0].lease_expires_at > hosts[3].lease_expires_at
    assert [o.host_id for o in b.pending()] == ["A", "A", "D"]


# -- the reference host -------------------------------------------------------------------------


def test_the_reference_host_stops_once_its_host_id_is_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "host.db"
    command = [sys.executable, "-m", "codemode_store.host", "--db", str(db), "--session", "t"]
    command += ["--host-id", "worker-1", "--lease-seconds", "5"]
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as host:
        assert host.stdin is not None and host.stdout is not None and host.stderr is not None

        def ask(request: str) -> Any:
            assert host.stdin is not None and host.stdout is not None
            host.stdin.write(request.encode() + b"\n")
            host.stdin.flush()
            return json.loads(host.stdout.readline())

        assert ask('{"id": 1, "op": "create", "cell_id": "c", "source": "echo hi"}') == {
            "id": 1,
            "ok": {"cell_id": "c"},
        }
        assert "ok" in ask('{"id": 2, "op": "observe", "cell_id": "c", "generation": 0}')
        with ObservationStore.open(db, host_id="worker-1") as newer:  # a second process with its id
            assert newer.incarnation == 2
            answer = ask('{"id": 3, "op": "observe", "cell_id": "c", "generation": 1}')
            assert answer["error"]["code"] == "HostFenced"
            assert host.wait(timeout=30) == 1
            assert host.stdout.read() == b""  # nothing after the fenced answer
            stderr = host.stderr.read().decode()
        assert stderr.startswith("host ready: host 'worker-1' incarnation 1, session 't'")
        assert "error: " in stderr and "superseded by incarnation 2" in stderr


# -- the command line ---------------------------------------------------------------------------


def test_cli_hosts_in_every_format(store_url: str, opened: Callable[..., ObservationStore]) -> None:
    a = opened(host_id="A")
    begun(a, "s", "c")
    opened(host_id="B\tb").close()  # an id with a control character, escaped in tables
    expected = [inspection.record(h) for h in a.hosts()]
    keys = inspection.RECORD_KEYS[HostInfo]
    assert keys == ("host_id", "incarnation", "lease_expires_at", "live", "pending")
    assert all(tuple(r) == keys for r in expected)

    table = cli(["--db", store_url, "hosts"]).stdout.splitlines()
    assert table[0].split() == ["host", "incarnation", "lease", "ends", "(UTC)", "status", "pending"]
    assert [line.split()[0] for line in table[2:]] == ["A", "B\\tb"]
    assert table[2].split()[-2:] == ["live", "1"] and table[3].split()[-2:] == ["lost", "0"]
    assert json.loads(cli(["--db", store_url, "hosts", "--json"]).stdout) == expected
    assert json.loads(cli(["--db", store_url, "hosts", "--format", "json"]).stdout) == expected
    lines = cli(["--db", store_url, "hosts", "--format", "jsonl"]).stdout.splitlines()
    assert [json.loads(line) for line in lines] == expected
    for name, delimiter in (("csv", ","), ("tsv", "\t")):
        rows = list(
            csv.reader(
                io.StringIO(cli(["--db", store_url, "hosts", "--format", name]).stdout), delimiter=delimiter
            )
        )
        assert rows[0] == list(keys)
        assert [row[0] for row in rows[1:]] == ["A", "B\\tb"]
        assert [row[3] for row in rows[1:]] == ["true", "false"]
    assert (
        len(cli(["--db", store_url, "hosts", "--limit", "1", "--format", "jsonl"]).stdout.splitlines()) == 1
    )
    history = cli(["--db", store_url, "history", "s", "c"]).stdout.splitlines()
    assert history[0].split()[-1] == "host" and history[2].split()[-1] == "A"
    (generation,) = json.loads(cli(["--db", store_url, "history", "s", "c", "--json"]).stdout)
    assert generation["host_id"] == "A"


def test_cli_hosts_of_a_store_without_hosts(store_url: str, opened: Callable[..., ObservationStore]) -> None:
    opened()
    assert cli(["--db", store_url, "hosts"]).stdout == "(no hosts)\n"
    assert cli(["--db", store_url, "hosts", "--json"]).stdout == "[]\n"


# -- the asyncio store --------------------------------------------------------------------------


def test_the_asyncio_store_holds_a_host_id_too(
    store_url: str, opened: Callable[..., ObservationStore]
) -> None:
    async def scenario() -> None:
        async with AsyncObservationStore.open(store_url, host_id="A", lease_seconds=0.3) as old:
            assert (old.host_id, old.incarnation, old.recovered) == ("A", 1, 0)
            s = old.session("s")
            await s.create_cell("c")
            assert await s.begin("c", 0) is None
            first = (await old.hosts())[0].lease_expires_at
            deadline = time.monotonic() + 10
            while (await old.hosts())[0].lease_expires_at == first:  # renewed by its task
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            async with AsyncObservationStore.open(store_url, host_id="A") as new:
                assert (new.incarnation, new.recovered) == (2, 1)
                with pytest.raises(HostFenced):
                    await s.begin("c", 1)
                with pytest.raises(NotPending):
                    await s.record("c", 0, ANSWER)
                observed = await new.session("s").observe("c", 1, lambda: ANSWER)
                assert observed.host_id == "A" and observed.state == "retained"
                assert await new.fail_pending() == 0
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "codemode-store-lease"]

    asyncio.run(scenario())
    assert [(h.host_id, h.incarnation, h.live) for h in opened().hosts()] == [("A", 2, False)]
