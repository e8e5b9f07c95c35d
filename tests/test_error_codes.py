"""Driver errors are classified by SQLite's result code, extended codes by their primary one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from codemode_store import DatabaseBusy, NotADatabase, ObservationStore, StoreError


def _driver_error(exc: StoreError) -> sqlite3.Error:
    cause = exc.__cause__
    original = getattr(cause, "orig", cause)
    assert isinstance(original, sqlite3.Error)
    return original


def test_a_damaged_page_is_sqlite_corrupt_and_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ObservationStore.open(path).close()
    with path.open("r+b") as file:
        file.seek(100)  # past the header: the schema page's own content
        file.write(b"\xff" * 200)
    with pytest.raises(NotADatabase) as caught:
        ObservationStore.open(path)
    assert _driver_error(caught.value).sqlite_errorcode & 0xFF == sqlite3.SQLITE_CORRUPT


def test_a_held_write_lock_is_sqlite_busy(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path, busy_timeout=0) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(DatabaseBusy) as caught:
                store.session("s").create_cell("c")
        finally:
            holder.close()
        assert _driver_error(caught.value).sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
        assert "busy timeout" in str(caught.value)
