"""SQLite settings (docs/protocol.md): WAL, busy timeout, synchronous, BEGIN IMMEDIATE, file modes, limits."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from support.tables import dump

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.engine import READ_ONLY
from codemode_store.errors import DatabaseBusy, DatabaseError, InvalidInput, NotPending


def pragma(store: ObservationStore, name: str) -> object:
    """Return the value of a pragma on a connection of the store's pool."""
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The path of a database file that does not exist yet."""
    return tmp_path / "store.db"


def test_connections_use_wal_busy_timeout_full_sync_by_default_and_foreign_keys(db_path: Path) -> None:
    with ObservationStore.open(db_path) as store:
        # Hold two connections at once, so the pool has to make a second one.
        reader = store.engine.execution_options(**{READ_ONLY: True})
        with reader.connect() as first, reader.connect() as second:
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
                assert isinstance(busy, int) and busy >= 5000
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, the default
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_durability_normal_is_an_opt_in(db_path: Path) -> None:
    with ObservationStore.open(db_path, durability="normal") as store:
        assert pragma(store, "synchronous") == 1  # NORMAL
        assert pragma(store, "journal_mode") == "wal"


def test_busy_timeout_option_sets_the_pragma(db_path: Path) -> None:
    with ObservationStore.open(db_path, busy_timeout=12.5) as store:
        assert pragma(store, "busy_timeout") == 12500


@pytest.mark.parametrize("durability", ["NORMAL", "fast", "", None, 1])
def test_other_durability_values_are_invalid_input(db_path: Path, durability: Any) -> None:
    with pytest.raises(InvalidInput, match="durability"):
        ObservationStore.open(db_path, durability=durability)
    assert not db_path.exists()


def test_a_store_switched_out_of_wal_is_switched_back_on_open(db_path: Path) -> None:
    ObservationStore.open(db_path).close()
    plain = sqlite3.connect(db_path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    plain.close()
    with ObservationStore.open(db_path) as store:
        assert pragma(store, "journal_mode") == "wal"


@contextlib.contextmanager
def traced(store: ObservationStore) -> Iterator[list[str]]:
    """Record the SQL that SQLite itself runs on every new connection of the store."""
    store.engine.dispose()  # so that every connection from now on is traced
    seen: list[str] = []

    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)

    event.listen(store.engine, "connect", on_connect)
    try:
        yield seen
    finally:
        event.remove(store.engine, "connect", on_connect)


def transactions(trace: list[str]) -> list[str]:
    """Return the BEGIN statements among traced SQL."""
    return [s.strip().upper() for s in trace if s.strip().upper().startswith("BEGIN")]


def test_writes_begin_immediate_and_reads_begin_deferred(db_path: Path) -> None:
    with ObservationStore.open(db_path) as store:
        s = store.session("thread-1")
        with traced(store) as trace:
            s.create_cell("cell-1")  # one statement, and still a write transaction
            assert transactions(trace) == ["BEGIN IMMEDIATE"]
            trace.clear()
            s.history("cell-1")  # two statements: one deferred transaction holds them
            assert transactions(trace) == ["BEGIN"]
            trace.clear()
            assert s.begin("cell-1", 0) is None
            s.record("cell-1", 0, Outcome.completed([TextItem("x")]))
            s.release("cell-1", 0)
            store.fail_pending()
            assert transactions(trace) == ["BEGIN IMMEDIATE"] * 4


def test_a_read_of_one_statement_is_its_own_transaction(db_path: Path) -> None:
    with ObservationStore.open(db_path) as store:
        s = store.session("thread-1")
        s.create_cell("cell-1")
        with traced(store) as trace:
            for read in (lambda: s.get("cell-1", 0), s.cells, store.pending):
                trace.clear()
                read()
                # One SELECT in autocommit: no BEGIN, no COMMIT, nothing else.
                assert len(trace) == 1, trace
                assert trace[0].lstrip().upper().startswith("SELECT"), trace


def test_a_read_leaves_no_snapshot_open_behind_it(db_path: Path) -> None:
    # The store keeps its connections between calls: a read whose statement
    # stayed open would pin the WAL, and no checkpoint could reset it.
    with ObservationStore.open(db_path) as store:
        s = store.session("thread-1")
        s.create_cell("cell-1")
        assert s.begin("cell-1", 0) is None
        s.record("cell-1", 0, Outcome.completed([TextItem("x")]))
        reads = (
            lambda: s.get("cell-1", 0),
            lambda: s.get("cell-1", 1),  # no such generation
            s.cells,
            store.pending,
            lambda: s.history("cell-1"),
        )
        for index, read in enumerate(reads):
            read()
            # A write after the read: a snapshot the read kept would predate it,
            # and no checkpoint could copy it back and reset the log.
            s.create_cell(f"after-read-{index}")
            other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
            try:
                busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                other.close()
            assert busy == 0


def other_writer_can_lock(path: Path) -> bool:
    """Tell whether a second connection can take the write lock right now."""
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


def test_a_write_takes_the_lock_before_its_first_read(db_path: Path) -> None:
    with ObservationStore.open(db_path) as store:
        s = store.session("thread-1")
        s.create_cell("cell-1")
        first_statement: list[bool] = []

        def probe(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            # The first statement after BEGIN in the operation is a read: by then a
            # write transaction must already exclude every other writer.
            if not statement.strip().upper().startswith("BEGIN") and not first_statement:
                first_statement.append(other_writer_can_lock(db_path))

        event.listen(store.engine, "before_cursor_execute", probe)
        try:
            assert s.begin("cell-1", 0) is None
        finally:
            event.remove(store.engine, "before_cursor_execute", probe)
        assert first_statement == [False]


def test_a_read_leaves_the_write_lock_free(db_path: Path) -> None:
    with ObservationStore.open(db_path) as store:
        s = store.session("thread-1")
        s.create_cell("cell-1")
        during_read: list[bool] = []

        def probe(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if not statement.strip().upper().startswith("BEGIN"):
                during_read.append(other_writer_can_lock(db_path))

        event.listen(store.engine, "before_cursor_execute", probe)
        try:
            s.history("cell-1")
        finally:
            event.remove(store.engine, "before_cursor_execute", probe)
        assert during_read and all(during_read)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under another process umask."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """Return the permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_and_its_wal_and_shm_are_private(db_path: Path) -> None:
    with umask(0), ObservationStore.open(db_path) as store:
        store.session("thread-1").create_cell("cell-1")
        with store.engine.connect():
            wal = db_path.with_name(db_path.name + "-wal")
            shm = db_path.with_name(db_path.name + "-shm")
            assert wal.exists() and shm.exists()
            assert mode(wal) == 0o600
            assert mode(shm) == 0o600
    assert mode(db_path) == 0o600


def test_an_existing_file_keeps_its_mode(db_path: Path) -> None:
    db_path.touch()
    db_path.chmod(0o640)
    ObservationStore.open(db_path).close()
    assert mode(db_path) == 0o640


def test_max_payload_bytes_is_honoured(store_url: str) -> None:
    outcome = Outcome.completed([TextItem("x" * 500)])
    with ObservationStore.open(store_url) as store:
        s = store.session("measure")
        s.create_cell("cell")
        s.begin("cell", 0)
        s.record("cell", 0, outcome)
        observation = s.get("cell", 0)
        assert observation is not None and observation.payload_bytes is not None
        size = observation.payload_bytes
    with ObservationStore.open(store_url, max_payload_bytes=size - 1) as store:
        assert store.max_payload_bytes == size - 1
        s = store.session("thread-1")
        s.create_cell("cell")
        s.begin("cell", 0)
        with pytest.raises(InvalidInput, match="max_payload_bytes"):
            s.record("cell", 0, outcome)
        still = s.get("cell", 0)
        assert still is not None and still.state == "pending"
    with ObservationStore.open(store_url, max_payload_bytes=size) as store:
        s = store.session("thread-1")
        s.record("cell", 0, outcome)
        replay = s.get("cell", 0)
        assert replay is not None and replay.outcome == outcome
        with pytest.raises(NotPending):
            s.record("cell", 1, outcome)


def test_max_payload_bytes_defaults_to_64_mib(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        assert store.max_payload_bytes == 64 * 1024 * 1024
        s = store.session("thread-1")
        s.create_cell("cell")
        s.begin("cell", 0)
        before = dump(store)
        # 32 Mi two-byte characters and one more byte: 64 MiB + 1 once encoded as UTF-8.
        with pytest.raises(InvalidInput, match="max_payload_bytes"):
            s.fail("cell", 0, "é" * (32 * 1024 * 1024) + "e")
        assert dump(store) == before


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "64"])
def test_max_payload_bytes_must_be_a_positive_integer(db_path: Path, limit: Any) -> None:
    with pytest.raises(InvalidInput, match="max_payload_bytes"):
        ObservationStore.open(db_path, max_payload_bytes=limit)


def test_a_write_to_a_read_only_database_is_a_database_error(db_path: Path) -> None:
    ObservationStore.open(db_path).close()
    with ObservationStore.open(f"sqlite:///file:{db_path}?mode=ro&uri=true") as store:
        assert store.cells() == []
        with pytest.raises(DatabaseError) as caught:
            store.session("thread-1").create_cell("cell-1")
    assert type(caught.value) is DatabaseError
    assert caught.value.session_id == "thread-1" and caught.value.cell_id == "cell-1"
    assert "readonly" in str(caught.value)


def test_a_write_behind_another_writer_past_the_timeout_is_database_busy(db_path: Path) -> None:
    with ObservationStore.open(db_path, busy_timeout=0.2) as store:
        blocker = sqlite3.connect(db_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(DatabaseBusy) as caught:
                store.session("thread-1").create_cell("cell-1")
            assert caught.value.cell_id == "cell-1"
            assert store.cells() == []  # reads go on beside the writer
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        store.session("thread-1").create_cell("cell-1")
        assert len(store.cells()) == 1
