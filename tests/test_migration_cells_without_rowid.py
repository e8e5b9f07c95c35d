"""Revision 0002: SQLite's ``cells`` rebuilt without a rowid, every row and reference kept."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.tables import dump

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.engine import build_engine, to_url
from codemode_store.errors import AlreadyReleased, CellClosed, DuplicateCell, ObservationInProgress
from codemode_store.migrate import HEAD_REVISION, current_revision, downgrade, upgrade
from codemode_store.wire import encode_payload

PAYLOAD = encode_payload(Outcome.yielded([TextItem("partial")]))


def fill_every_state(store: ObservationStore) -> None:
    """Leave rows in every state of an observation, in two sessions, some cells closed."""
    for session_id in ("thread-1", "thread-2"):
        s = store.session(session_id)
        s.create_cell("released")
        s.begin("released", 0, request={"yield_time_ms": 10})
        s.record("released", 0, Outcome.yielded([TextItem("partial")]))
        s.begin("released", 1)  # releases generation 0
        s.record("released", 1, Outcome.completed([TextItem("done")], error_text="boom"))
        s.release("released", 1)
        s.create_cell("retained")
        s.begin("retained", 0)
        s.record("retained", 0, Outcome.missing())
        s.create_cell("failed")
        s.begin("failed", 0)
        s.fail("failed", 0, "the runtime died")
        s.create_cell("pending")
        s.begin("pending", 0)
        s.create_cell("never-begun")
        s.create_cell("closed")
        s.close_cell("closed")


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Return the rows of one query, run straight on the SQLite file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def cells_without_rowid(path: Path) -> bool:
    """Tell whether the SQLite file's ``cells`` table is a WITHOUT ROWID table."""
    [(sql,)] = query(path, "SELECT sql FROM sqlite_master WHERE name = 'cells'")
    return "WITHOUT ROWID" in str(sql).upper()


def references_and_integrity(path: Path) -> tuple[list[object], str]:
    """Return SQLite's foreign key violations and its integrity check verdict."""
    [(verdict,)] = query(path, "PRAGMA integrity_check")
    return list(query(path, "PRAGMA foreign_key_check")), str(verdict)


def free_pages(path: Path) -> int:
    """Return how many pages of the SQLite file are on its freelist."""
    [(count,)] = query(path, "PRAGMA freelist_count")
    return int(count)


def without_version(tables: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    """Return a dump without the stamped revision (which the test checks on its own)."""
    return {name: rows for name, rows in tables.items() if name != "alembic_version"}


def test_down_to_0001_and_up_again_keeps_every_row(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        fill_every_state(store)
        at_head = dump(store)
        downgrade(store.engine, "0002")  # the rows as revision 0002 holds them (no host columns)
        at_0002 = dump(store)
        assert len(at_0002["observations"]) == 10 and len(at_0002["cells"]) == 12
        downgrade(store.engine, "0001")
        assert current_revision(store.engine) == "0001"
        assert without_version(dump(store)) == without_version(at_0002)
        upgrade(store.engine, "0002")
        assert dump(store) == at_0002
        upgrade(store.engine, "head")
        assert current_revision(store.engine) == HEAD_REVISION
        assert dump(store) == at_head
        # The store goes on: replays, rules and the cascade of end_session.
        s = store.session("thread-1")
        replay = s.begin("retained", 0)
        assert replay is not None and replay.outcome == Outcome.missing()
        with pytest.raises(AlreadyReleased):
            s.begin("released", 1)
        with pytest.raises(DuplicateCell):
            s.create_cell("closed")
        with pytest.raises(CellClosed):
            s.begin("closed", 0)
        with pytest.raises(ObservationInProgress):
            s.begin("pending", 1)
        assert store.fail_pending() == 2  # one pending generation in each session
        assert s.begin("pending", 1) is None


def test_the_rebuilt_table_keeps_its_rules_and_its_cascade(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill_every_state(store)
        downgrade(store.engine, "0001")
    assert not cells_without_rowid(path)
    with ObservationStore.open(path) as store:  # open upgrades to head
        assert cells_without_rowid(path)
        assert references_and_integrity(path) == ([], "ok")
        assert store.end_session("thread-2") == 5
        after = dump(store)
        assert {row[0] for row in after["cells"]} == {"thread-1"}
        assert {row[0] for row in after["observations"]} == {"thread-1"}
    # The reference still cascades: deleting a cell behind the store's back takes its rows.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM cells WHERE session_id = 'thread-1' AND cell_id = 'released'")
        left = conn.execute("SELECT cell_id FROM observations ORDER BY cell_id, generation").fetchall()
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO observations (session_id, cell_id, generation, state, begun_at) "
                "VALUES ('thread-1', 'no-such-cell', 0, 'pending', 0)"
            )
    finally:
        conn.close()
    assert left == [("failed",), ("pending",), ("retained",)]
    assert references_and_integrity(path) == ([], "ok")


def test_a_new_sqlite_store_has_cells_without_rowid_and_no_free_page(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ObservationStore.open(path).close()
    assert cells_without_rowid(path)
    assert references_and_integrity(path) == ([], "ok")
    assert free_pages(path) == 0  # the rebuilt table's old pages were given back


@pytest.mark.parametrize("auto_vacuum", ["INCREMENTAL", "NONE"])
def test_a_file_made_by_revision_0001_alone_upgrades_on_open(tmp_path: Path, auto_vacuum: str) -> None:
    path = tmp_path / "store.db"
    engine = build_engine(to_url(str(path)))
    try:
        upgrade(engine, "0001")  # the schema exactly as the previous release made it
    finally:
        engine.dispose()
    # Rows written by hand, as a host of the previous release would have left them.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if auto_vacuum == "NONE":  # as a file made before auto-vacuum was the default
            conn.execute("PRAGMA auto_vacuum = NONE")
            conn.execute("VACUUM")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(
            "INSERT INTO cells (session_id, cell_id, closed, last_generation, created_at) "
            "VALUES ('s', 'c', 0, 0, 1)"
        )
        conn.execute(
            "INSERT INTO observations (session_id, cell_id, generation, state, kind, payload_bytes, "
            "payload_sha256, begun_at, recorded_at, payload) VALUES "
            "('s', 'c', 0, 'retained', 'yielded', ?, ?, 1, 2, ?)",
            (len(PAYLOAD), hashlib.sha256(PAYLOAD).digest(), PAYLOAD),
        )
        # Space a released payload left, which only `vacuum` is asked to give back.
        conn.execute("CREATE TABLE scratch (data BLOB)")
        conn.execute("INSERT INTO scratch VALUES (zeroblob(100000))")
        conn.execute("DROP TABLE scratch")
    finally:
        conn.close()
    assert not cells_without_rowid(path)
    free_before = free_pages(path)
    assert free_before > 20
    ObservationStore.open(path).close()  # upgrades
    if auto_vacuum == "INCREMENTAL":
        # The rebuilds gave back what they freed themselves, and nothing the file held
        # before; revision 0003's hosts table and its key's index took two free pages.
        assert free_pages(path) == free_before - 2
    else:  # nothing gives pages back to such a file but `codemode-store vacuum --full`
        assert free_pages(path) >= free_before - 2  # less the new hosts table's two pages
    with ObservationStore.open(path) as store:
        assert current_revision(store.engine) == HEAD_REVISION
        s = store.session("s")
        replay = s.begin("c", 0)
        assert replay is not None and replay.outcome == Outcome.yielded([TextItem("partial")])
        assert s.begin("c", 1) is None  # releases generation 0
        got = s.get("c", 0)
        assert got is not None and got.state == "released"
        assert got.payload_sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert cells_without_rowid(path)
    assert references_and_integrity(path) == ([], "ok")
