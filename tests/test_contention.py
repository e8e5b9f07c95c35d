"""Contention on one SQLite file: many writers and CLI readers, and a lock held past the busy timeout.

The full figure (8 processes x 300 cells) is ``scripts/contention_campaign.py``;
the test runs the same campaign with fewer cells per process.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.tables import dump

from cli import main
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import DatabaseBusy, StoreError
from scripts.contention_campaign import WRITES_PER_CELL, run_contention

TEST_CELLS = 150


@pytest.mark.slow
def test_eight_writer_processes_and_cli_readers_lose_nothing(tmp_path: Path) -> None:
    # Two sessions per process, a thread each: their writes share commits
    # (group commit) while the processes contend for the file's lock.
    report = run_contention(tmp_path / "store.db", workers=8, cells=TEST_CELLS // 2, readers=2, threads=2)
    assert report.problems == []
    assert report.write_operations == 8 * TEST_CELLS * WRITES_PER_CELL
    assert report.reader_runs >= 2


# -- a lock held past the busy timeout ------------------------------------------------------------

BIG = Outcome.completed([TextItem("x" * 1_000_000)])


def world(store: ObservationStore) -> None:
    """Cells ready for every write: fresh, pending, completed (terminal), and a yield."""
    s = store.session("s")
    for cell in ("fresh", "busy", "done", "open"):
        s.create_cell(cell)
    s.begin("busy", 0)
    s.begin("done", 0)
    s.record("done", 0, Outcome.completed([TextItem("done")]))
    s.begin("open", 0)
    s.record("open", 0, Outcome.yielded([TextItem("partial")]))


WRITES: dict[str, tuple[Callable[[ObservationStore], Any], tuple[str | None, str | None, int | None]]] = {
    "create_cell": (lambda st: st.session("s").create_cell("new"), ("s", "new", None)),
    "begin first": (lambda st: st.session("s").begin("fresh", 0), ("s", "fresh", 0)),
    "begin next (implicit release)": (lambda st: st.session("s").begin("open", 1), ("s", "open", 1)),
    "record 1 MB": (lambda st: st.session("s").record("busy", 0, BIG), ("s", "busy", 0)),
    "fail": (lambda st: st.session("s").fail("busy", 0, "lost"), ("s", "busy", 0)),
    "release": (lambda st: st.session("s").release("done", 0), ("s", "done", 0)),
    "close_cell": (lambda st: st.session("s").close_cell("open"), ("s", "open", None)),
    "end_session": (lambda st: st.end_session("s"), ("s", None, None)),
    "fail_pending": (lambda st: st.fail_pending(), (None, None, None)),
}


@pytest.fixture
def world_path(tmp_path: Path) -> Path:
    """A store file with the world in it."""
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        world(store)
    return path


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the write lock of ``path`` from a raw connection (BEGIN IMMEDIATE) inside the block."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


@pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
def test_a_write_locked_out_past_the_timeout_is_database_busy_and_writes_nothing(
    world_path: Path,
    write: tuple[Callable[[ObservationStore], Any], tuple[str | None, str | None, int | None]],
) -> None:
    call, key = write
    with ObservationStore.open(world_path, busy_timeout=0.2) as store:
        before = dump(store)
        with write_lock(world_path):
            with pytest.raises(DatabaseBusy) as caught:
                call(store)
            assert len(store.cells("s")) == 4  # reads go on beside the writer
        assert isinstance(caught.value, StoreError)
        assert "locked" in str(caught.value) and "busy timeout" in str(caught.value)
        assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == key
        assert dump(store) == before  # nothing half-written
        call(store)  # once the lock is gone the same call goes through
        assert dump(store) != before


def test_the_cli_reports_a_lock_held_past_the_timeout_in_one_line(world_path: Path) -> None:
    with ObservationStore.open(world_path) as store:
        before = dump(store)
    with write_lock(world_path):
        result = CliRunner().invoke(main, ["--db", str(world_path), "release", "s", "done", "0"])
        # A read goes on beside the writer.
        assert CliRunner().invoke(main, ["--db", str(world_path), "cells", "--json"]).exit_code == 0
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "database is locked" in lines[0]
    assert "'done'" in lines[0] and "generation 0" in lines[0]
    with ObservationStore.open(world_path) as store:
        assert dump(store) == before
