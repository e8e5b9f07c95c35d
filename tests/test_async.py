"""The asyncio front end: its opening, settings, concurrency, a free loop.

The protocol tests run on it where they are written: the ``store`` fixture of
``tests/conftest.py`` opens each front end in a module marked ``front_ends``
(test_begin.py, test_record_fail.py, test_release.py, test_reads_and_lifecycle.py,
test_untouched.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.aio import AsyncObservationStore, AsyncStoreSession
from codemode_store.async_engine import async_url, schema_url
from codemode_store.calls import Call
from codemode_store.engine import READ_ONLY, to_url
from codemode_store.errors import DatabaseBusy, InvalidInput, NotADatabase, SchemaError

# -- the protocol tests, through the async front end ------------------------------------

#: The modules whose tests of ``store`` run on both front ends (their ``front_ends`` mark).
PROTOCOL_MODULES = [
    "test_begin",
    "test_record_fail",
    "test_release",
    "test_reads_and_lifecycle",
    "test_untouched",
]


@pytest.mark.parametrize("module_name", PROTOCOL_MODULES)
def test_every_protocol_module_runs_its_store_tests_on_both_front_ends(module_name: str) -> None:
    module = importlib.import_module(module_name)
    marks = module.pytestmark if isinstance(module.pytestmark, list) else [module.pytestmark]
    assert "front_ends" in [mark.name for mark in marks]
    store_tests = [
        name
        for name, value in vars(module).items()
        if name.startswith("test_") and {"store", "session"} & set(inspect.signature(value).parameters)
    ]
    assert len(store_tests) >= 5, store_tests


# -- opening ----------------------------------------------------------------------------------


def test_open_is_awaitable_and_an_async_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def scenario() -> tuple[bool, list[str]]:
        async with AsyncObservationStore.open(path) as store:
            await store.session("s").create_cell("c")
        store = await AsyncObservationStore.open(path)
        try:
            reopened_cells = [summary.cell_id for summary in await store.cells("s")]
        finally:
            await store.close()
        async with await AsyncObservationStore.open(f"sqlite:///{path}") as again:
            closed = (await again.cells("s"))[0].closed
        return closed, reopened_cells

    assert asyncio.run(scenario()) == (False, ["c"])


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"durability": "fast"}, InvalidInput),
        ({"max_payload_bytes": 0}, InvalidInput),
        ({"busy_timeout": -1}, InvalidInput),
    ],
    ids=["durability", "max-payload-bytes", "busy-timeout"],
)
def test_bad_options_are_refused_as_by_the_sync_store(
    tmp_path: Path, options: dict[str, Any], error: type[Exception]
) -> None:
    path = tmp_path / "store.db"
    with pytest.raises(error) as sync_error:
        ObservationStore.open(path, **options)

    async def open_async() -> None:
        await AsyncObservationStore.open(path, **options)

    with pytest.raises(error) as async_error:
        asyncio.run(open_async())
    assert str(async_error.value) == str(sync_error.value)


def test_a_file_that_is_not_a_database_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database, just some words " * 64)

    async def open_async() -> None:
        await AsyncObservationStore.open(path)

    with pytest.raises(NotADatabase):
        asyncio.run(open_async())


def test_a_schema_written_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ObservationStore.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.close()

    async def open_async() -> None:
        await AsyncObservationStore.open(path)

    with pytest.raises(SchemaError, match="9999"):
        asyncio.run(open_async())


@pytest.mark.parametrize(
    ("target", "async_driver", "sync_driver"),
    [
        ("host.db", "sqlite+aiosqlite", "sqlite+pysqlite"),
        ("sqlite:///host.db", "sqlite+aiosqlite", "sqlite+pysqlite"),
        ("sqlite+aiosqlite:///host.db", "sqlite+aiosqlite", "sqlite+pysqlite"),
        ("postgresql://host/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg2://host/db", "postgresql+psycopg", "postgresql+psycopg"),
    ],
)
def test_urls_get_the_async_driver_and_keep_the_database(
    target: str, async_driver: str, sync_driver: str
) -> None:
    url = to_url(target)
    assert async_url(url).drivername == async_driver
    assert schema_url(url).drivername == sync_driver
    assert async_url(url).database == schema_url(url).database == url.database


@pytest.mark.parametrize("target", [":memory:", "sqlite://", "mysql://host/db"])
def test_memory_databases_and_other_backends_are_invalid_input(target: str) -> None:
    async def open_async() -> None:
        await AsyncObservationStore.open(target)

    with pytest.raises(InvalidInput):
        asyncio.run(open_async())


# -- the SQLite settings on the async path -----------------------------------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_the_sqlite_settings_reach_the_async_connections(
    tmp_path: Path, durability: Any, synchronous: int
) -> None:
    path = tmp_path / "store.db"
    names = ["journal_mode", "busy_timeout", "synchronous", "foreign_keys"]

    async def pragmas() -> list[dict[str, Any]]:
        async with AsyncObservationStore.open(path, durability=durability, busy_timeout=2.5) as store:
            assert store.engine.url.drivername == "sqlite+aiosqlite"
            # Two connections at once, so the pool has to make (and set up) a second;
            # read-only, so that they do not wait for each other's write lock.
            reader = store.engine.execution_options(**{READ_ONLY: True})
            async with reader.connect() as first, reader.connect() as second:
                return [
                    {name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar() for name in names}
                    for conn in (first, second)
                ]

    expected = {"journal_mode": "wal", "busy_timeout": 2500, "synchronous": synchronous, "foreign_keys": 1}
    assert asyncio.run(pragmas()) == [expected, expected]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def _lock_probe(path: Path) -> Call[bool]:
    """A call that tells whether another connection can take the write lock meanwhile."""

    def probe(conn: Connection, now: int) -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return False
        else:
            other.execute("ROLLBACK")
            return True
        finally:
            other.close()

    return Call(probe, writes=True)


def test_write_transactions_begin_immediate_and_reads_deferred(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def probe() -> tuple[bool, bool]:
        async with AsyncObservationStore.open(path) as store:
            writer = _lock_probe(path)
            reader = Call(writer.run, writes=False)
            return await store.run(writer), await store.run(reader)

    lock_free_in_write, lock_free_in_read = asyncio.run(probe())
    assert not lock_free_in_write  # BEGIN IMMEDIATE took the lock before any statement
    assert lock_free_in_read


def test_max_payload_bytes_is_honoured_before_anything_is_written(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, str, bool]:
        async with AsyncObservationStore.open(tmp_path / "store.db", max_payload_bytes=300) as store:
            s = store.session("s")
            await s.create_cell("c")
            await s.begin("c", 0)
            with pytest.raises(InvalidInput, match="max_payload_bytes") as too_big:
                await s.record("c", 0, Outcome.completed([TextItem("x" * 400)]))
            error = too_big.value
            assert (error.session_id, error.cell_id, error.generation) == ("s", "c", 0)
            with pytest.raises(InvalidInput, match="max_payload_bytes"):
                await s.fail("c", 0, "e" * 400)
            observation = await s.get("c", 0)
            assert observation is not None
            still = observation.state
            await s.record("c", 0, Outcome.completed([TextItem("x" * 100)]))
            after = await s.get("c", 0)
            assert after is not None
            return still, after.state, (await s.cells())[0].closed

    assert asyncio.run(scenario()) == ("pending", "retained", True)


def test_a_write_behind_another_writer_past_the_timeout_is_database_busy(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def scenario() -> list[str]:
        async with AsyncObservationStore.open(path, busy_timeout=0.05) as store:
            s = store.session("s")
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(DatabaseBusy) as busy:
                    await s.create_cell("c")
                assert (busy.value.session_id, busy.value.cell_id) == ("s", "c")
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            await s.create_cell("c")
            return [summary.cell_id for summary in await s.cells()]

    assert asyncio.run(scenario()) == ["c"]


# -- concurrency and a free event loop ------------------------------------------------------------


async def _cell_life(session: AsyncStoreSession, cell_id: str) -> tuple[Any, bool]:
    await session.create_cell(cell_id)
    assert await session.begin(cell_id, 0) is None
    await session.record(cell_id, 0, Outcome.yielded([TextItem(f"{cell_id} partial")]))
    assert await session.begin(cell_id, 1) is None
    await session.record(cell_id, 1, Outcome.completed([TextItem(f"{cell_id} done")]))
    replay = await session.begin(cell_id, 1)
    return replay, await session.release(cell_id, 1)


def test_fifty_concurrent_tasks_on_different_cells_complete(store_url: str) -> None:
    cells = [(f"s{i % 5}", f"c{i}") for i in range(50)]

    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        async with AsyncObservationStore.open(store_url) as store:
            results = await asyncio.gather(
                *(_cell_life(store.session(s), c) for s, c in cells), return_exceptions=True
            )
            return results, await store.cells(), await store.pending()

    results, summaries, pending = asyncio.run(scenario())
    assert [r for r in results if isinstance(r, BaseException)] == []
    for (_, cell_id), (replay, released) in zip(cells, results, strict=True):
        assert replay.outcome == Outcome.completed([TextItem(f"{cell_id} done")])
        assert released is True
    assert sorted((c.session_id, c.cell_id) for c in summaries) == sorted(cells)
    assert all(c.closed and c.last_state == "released" and c.retained_bytes == 0 for c in summaries)
    assert pending == []


def test_the_loop_keeps_ticking_while_32_mb_are_recorded(tmp_path: Path) -> None:
    outcome = Outcome.completed([TextItem("x" * (32 * 1024 * 1024))])
    ticks: list[float] = []

    async def scenario() -> tuple[float, float, Any]:
        async with AsyncObservationStore.open(tmp_path / "store.db") as store:
            s = store.session("s")
            await s.create_cell("big")
            await s.begin("big", 0)
            stop = asyncio.Event()

            async def heartbeat() -> None:
                while not stop.is_set():
                    ticks.append(time.perf_counter())
                    await asyncio.sleep(0.001)

            beating = asyncio.create_task(heartbeat())
            await asyncio.sleep(0.01)
            start = time.perf_counter()
            await s.record("big", 0, outcome)
            end = time.perf_counter()
            await asyncio.sleep(0.01)
            stop.set()
            await beating
            return start, end, await s.get("big", 0)

    start, end, stored = asyncio.run(scenario())
    assert stored.outcome == outcome
    assert stored.payload_bytes > 32 * 1024 * 1024
    during = [t for t in ticks if start <= t <= end]
    marks = [start, *during, min(t for t in ticks if t > end)]
    longest_gap = max(b - a for a, b in itertools.pairwise(marks))
    # Recorded on the loop's own thread, the write would leave no tick at all and
    # one gap as long as the whole call.
    assert len(during) >= 5
    assert longest_gap < (end - start) / 2


def test_a_stored_payload_is_the_same_bytes_through_either_front_end(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    outcome = Outcome.yielded([TextItem("héllo"), TextItem("wörld")])

    async def record_async() -> None:
        async with AsyncObservationStore.open(path) as store:
            s = store.session("s")
            await s.create_cell("c")
            await s.begin("c", 0)
            await s.record("c", 0, outcome)

    asyncio.run(record_async())
    with ObservationStore.open(path) as sync_store:
        s = sync_store.session("s")
        s.create_cell("d")
        s.begin("d", 0)
        s.record("d", 0, outcome)
        by_async, by_sync = s.get("c", 0), s.get("d", 0)
    assert by_async is not None and by_sync is not None
    assert by_async.payload_sha256 == by_sync.payload_sha256
    assert by_async.outcome == by_sync.outcome == outcome
    assert by_async.payload_bytes == by_sync.payload_bytes


def test_a_cancelled_record_happens_whole_or_not_at_all(tmp_path: Path) -> None:
    outcome = Outcome.completed([TextItem("x" * (4 * 1024 * 1024))])

    async def scenario() -> list[tuple[str, str]]:
        async with AsyncObservationStore.open(tmp_path / "store.db") as store:
            s = store.session("s")
            states = []
            for index, delay in enumerate([0.0, 0.005, 0.02, 0.05]):
                cell_id = f"c{index}"
                await s.create_cell(cell_id)
                await s.begin(cell_id, 0)
                task = asyncio.create_task(s.record(cell_id, 0, outcome))
                await asyncio.sleep(delay)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                observation = await s.get(cell_id, 0)
                assert observation is not None
                if observation.state == "pending":  # rolled back: the host records it again
                    await s.record(cell_id, 0, outcome)
                after = await s.get(cell_id, 0)
                assert after is not None and after.outcome == outcome
                states.append((observation.state, after.state))
            return states

    states = asyncio.run(scenario())
    assert {before for before, _ in states} <= {"pending", "retained"}
    assert {after for _, after in states} == {"retained"}
