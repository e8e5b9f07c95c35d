"""PostgreSQL-specific proof: several processes on one store, locks held by the database.

The protocol itself runs on PostgreSQL through the ``store`` fixture of every
other test file (migrations included: ``test_schema.py``). Here: what only a
server shared by several processes shows. Workers are separate processes
(``spawn``), never threads, so no process-local lock could explain a result.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text

from cli import main as cli_main
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.aio import AsyncObservationStore
from codemode_store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable, ObservationInProgress
from codemode_store.migrate import HEAD_REVISION

pytestmark = pytest.mark.postgres

WORKERS = 4
ROUNDS = 4
WAIT = 60  # seconds: a bound on every wait, so a broken run fails instead of hanging

SPAWN = multiprocessing.get_context("spawn")


# -- workers (module level: a spawned process imports them by name) -----------------


def _begin_rounds(url: str, barrier: Any, results: Any) -> None:
    """Race the other workers to begin each generation; the winner records it afterwards."""
    with ObservationStore.open(url) as store:
        session = store.session("s")
        for generation in range(1, ROUNDS + 1):
            barrier.wait(WAIT)
            try:
                won = session.begin("c", generation) is None
                results.put((generation, "won" if won else "replayed"))
            except ObservationInProgress:
                won = False
                results.put((generation, "in progress"))
            barrier.wait(WAIT)  # every worker has tried: only now may the winner record
            if won:
                session.record("c", generation, Outcome.yielded([TextItem(f"out {generation}")]))
            barrier.wait(WAIT)


def _release_rounds(url: str, barrier: Any, results: Any) -> None:
    """Race the other workers to release generation 0 of each cell."""
    with ObservationStore.open(url) as store:
        session = store.session("s")
        for round_number in range(ROUNDS):
            barrier.wait(WAIT)
            results.put((round_number, session.release(f"c{round_number}", 0)))


def _open_new_database(url: str, barrier: Any, results: Any) -> None:
    """Open a database no one has opened yet, all workers at once."""
    barrier.wait(WAIT)
    try:
        ObservationStore.open(url).close()
        results.put("ok")
    except Exception as exc:  # reported, not raised: the parent asserts
        results.put(f"{type(exc).__name__}: {exc}")


def _run_workers(target: Callable[[str, Any, Any], None], url: str, expected: int) -> list[Any]:
    """Run ``WORKERS`` processes of ``target`` and return the ``expected`` results they put."""
    barrier = SPAWN.Barrier(WORKERS)
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=target, args=(url, barrier, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    try:
        collected = [results.get(timeout=WAIT) for _ in range(expected)]
    except queue.Empty:
        collected = []
    for worker in workers:
        worker.join(WAIT)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    assert len(collected) == expected
    return collected


# -- several processes ------------------------------------------------------------------


def test_concurrent_begin_from_processes_has_exactly_one_winner(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url) as store:
        session = store.session("s")
        session.create_cell("c")
        session.begin("c", 0)
        session.record("c", 0, Outcome.yielded([TextItem("out 0")]))

    results = _run_workers(_begin_rounds, postgres_url, WORKERS * ROUNDS)

    for generation in range(1, ROUNDS + 1):
        outcomes = sorted(result for g, result in results if g == generation)
        assert outcomes == ["in progress"] * (WORKERS - 1) + ["won"], generation
    with ObservationStore.open(postgres_url) as store:
        history = store.session("s").history("c")
    assert [(o.generation, o.state) for o in history] == [
        *((g, "released") for g in range(ROUNDS)),
        (ROUNDS, "retained"),
    ]
    assert history[-1].outcome == Outcome.yielded([TextItem(f"out {ROUNDS}")])


def test_concurrent_release_from_processes_drops_the_payload_once(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url) as store:
        session = store.session("s")
        for round_number in range(ROUNDS):
            session.create_cell(f"c{round_number}")
            session.begin(f"c{round_number}", 0)
            session.record(f"c{round_number}", 0, Outcome.completed([TextItem("done")]))

    results = _run_workers(_release_rounds, postgres_url, WORKERS * ROUNDS)

    for round_number in range(ROUNDS):
        dropped = [released for r, released in results if r == round_number]
        assert sorted(dropped) == [False] * (WORKERS - 1) + [True], round_number
    with ObservationStore.open(postgres_url) as store:
        session = store.session("s")
        for round_number in range(ROUNDS):
            tombstone = session.get(f"c{round_number}", 0)
            assert tombstone is not None
            assert tombstone.state == "released"
            assert tombstone.outcome is None
            assert tombstone.released_at is not None
        assert sum(cell.retained_bytes for cell in store.cells()) == 0


def test_processes_opening_one_new_database_at_once_all_succeed(postgres_url: str) -> None:
    results = _run_workers(_open_new_database, postgres_url, WORKERS)

    assert results == ["ok"] * WORKERS
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                HEAD_REVISION
            ]
    finally:
        engine.dispose()


# -- row locks of the database ------------------------------------------------------------


def test_a_writer_waits_for_a_row_lock_held_by_another_connection(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url, busy_timeout=0.2) as store:
        session = store.session("s")
        session.create_cell("c")
        other = create_engine(postgres_url)
        try:
            with other.begin() as conn:
                conn.execute(text("SELECT 1 FROM cells WHERE cell_id = 'c' FOR UPDATE"))
                with pytest.raises(DatabaseBusy) as caught:
                    session.begin("c", 0)
                assert caught.value.cell_id == "c"
                assert caught.value.generation == 0
            # The other transaction ended: its lock went with it.
            assert session.begin("c", 0) is None
        finally:
            other.dispose()
        assert [o.state for o in session.history("c")] == ["pending"]


def test_a_release_waits_for_the_lock_of_the_observation_row(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url, busy_timeout=0.2) as store:
        session = store.session("s")
        session.create_cell("c")
        session.begin("c", 0)
        session.record("c", 0, Outcome.completed([TextItem("done")]))
        other = create_engine(postgres_url)
        try:
            with other.begin() as conn:
                conn.execute(text("SELECT 1 FROM observations WHERE generation = 0 FOR UPDATE"))
                with pytest.raises(DatabaseBusy):
                    session.release("c", 0)
            assert session.get("c", 0) is not None
            assert session.release("c", 0) is True
        finally:
            other.dispose()


def test_the_asyncio_store_waits_for_row_locks_too(postgres_url: str) -> None:
    async def begin_while_locked() -> None:
        async with AsyncObservationStore.open(postgres_url, busy_timeout=0.2) as store:
            session = store.session("s")
            await session.create_cell("c")
            other = create_engine(postgres_url)
            try:
                with other.begin() as conn:
                    conn.execute(text("SELECT 1 FROM cells WHERE cell_id = 'c' FOR UPDATE"))
                    with pytest.raises(DatabaseBusy):
                        await session.begin("c", 0)
                assert await session.begin("c", 0) is None
            finally:
                other.dispose()

    asyncio.run(begin_while_locked())


# -- connection errors ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["closed port", "wrong password"])
def test_connection_errors_are_database_errors_without_the_password(postgres_url: str, fault: str) -> None:
    url = make_url(postgres_url)
    password = "not-the-password-4b1d" if fault == "wrong password" else url.password
    assert password
    url = url.set(password=password)
    if fault == "closed port":
        url = url.set(port=1)
    with pytest.raises(DatabaseError) as caught:
        ObservationStore.open(url.render_as_string(hide_password=False))
    assert "connection" in str(caught.value) or "password" in str(caught.value)
    assert str(password) not in str(caught.value)
    assert str(password) not in repr(caught.value)


# -- a database created with encoding SQL_ASCII ----------------------------------------


@pytest.fixture
def sql_ascii_url(postgres_admin: Any) -> Any:
    """The URL of a new database with encoding SQL_ASCII (``initdb`` without ``-E UTF8`` makes these)."""
    name = "test_sql_ascii"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(
            text(
                f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            )
        )
    try:
        yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_sql_ascii_database_stores_and_returns_unicode_text(sql_ascii_url: str) -> None:
    # Without client_encoding=utf8 psycopg hands back bytes and opening fails with a TypeError.
    outcome = Outcome.completed([TextItem("héllo ✓ 字")], error_text="falló")
    with ObservationStore.open(sql_ascii_url) as store:
        s = store.session("séance")
        s.create_cell("cellule→1")
        s.begin("cellule→1", 0, {"note": "é"})
        s.record("cellule→1", 0, outcome)
    with ObservationStore.open(sql_ascii_url) as store:
        got = store.session("séance").get("cellule→1", 0)
        assert got is not None and got.outcome == outcome
        assert [(c.session_id, c.cell_id) for c in store.cells()] == [("séance", "cellule→1")]


@pytest.mark.parametrize("wrong", ["password", "database"])
def test_a_refused_login_is_not_unavailable(postgres_url: str, wrong: str) -> None:
    # The server answered and refused: no retry fixes that, so it is no DatabaseUnavailable.
    url = make_url(postgres_url)
    bad = (
        url.set(password="not-the-password") if wrong == "password" else url.set(database="no_such_database")
    )
    with pytest.raises(DatabaseError) as raised:
        ObservationStore.open(bad.render_as_string(hide_password=False))
    assert not isinstance(raised.value, DatabaseUnavailable)
    assert "refused the login" in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    result = CliRunner().invoke(cli_main, ["--db", bad.render_as_string(hide_password=False), "sessions"])
    assert result.exit_code == 1
    assert "refused the login" in result.output and "retry once it is back" not in result.output
