"""The store's idle connections (engine.IdleConnections): reused, never leaked."""

from __future__ import annotations

import gc
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import UnknownCell


def pool_checkouts(store: ObservationStore, work: Any) -> int:
    """Run ``work()`` and return how many times it took a connection out of the pool."""
    count = 0

    def on_checkout(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(store.engine.pool, "checkout", on_checkout)
    try:
        work()
    finally:
        event.remove(store.engine.pool, "checkout", on_checkout)
    return count


def test_consecutive_operations_reuse_an_idle_connection(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "s.db") as store:
        s = store.session("s")
        s.create_cell("warm-up")
        assert s.get("warm-up", 0) is None  # one writer and one reader are idle now

        def work() -> None:
            s.create_cell("c")
            s.begin("c", 0)
            s.record("c", 0, Outcome.completed([TextItem("x")]))
            assert s.get("c", 0) is not None
            s.release("c", 0)

        assert pool_checkouts(store, work) == 0


def test_a_failed_operation_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with ObservationStore.open(path, busy_timeout=0.5) as store:
        s = store.session("s")
        with pytest.raises(UnknownCell):
            s.begin("nobody", 0)
        # Another writer can take the write lock at once: nothing is left held.
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        s.create_cell("c")
        assert s.begin("c", 0) is None


def test_a_store_dropped_without_close_warns_of_nothing(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ObservationStore.open(tmp_path / "s.db")
        store.session("s").create_cell("c")
        assert store.cells() != []
        del store
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_threads_share_the_store_without_errors(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with ObservationStore.open(tmp_path / "s.db") as store:

        def host(index: int) -> None:
            s = store.session(f"s{index}")
            try:
                for n in range(20):
                    cell = f"c{n}"
                    s.create_cell(cell)
                    s.begin(cell, 0)
                    s.record(cell, 0, Outcome.completed([TextItem(f"{index}/{n}")]))
                    assert s.get(cell, 0) is not None
                    assert s.release(cell, 0)
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=host, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        summaries = store.cells()
    assert errors == []
    assert len(summaries) == 8 * 20
    assert all(summary.closed and summary.last_state == "released" for summary in summaries)
