"""A rule's rejection is the store's own answer: no driver exception chained to it.

Unexpected driver errors (a lock held past the timeout) keep the driver's
exception as their cause, for whoever debugs them.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    DatabaseBusy,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    StoreError,
    UnknownCell,
)

DONE = Outcome.completed([TextItem("done")])


def prepared(store: ObservationStore) -> Any:
    """Return session ``s`` with a cell in each situation the rejections below need."""
    s = store.session("s")
    s.create_cell("open")  # generation 0: a retained yield, begun with a request
    s.begin("open", 0, {"wait": 1})
    s.record("open", 0, Outcome.yielded([TextItem("partial")]))
    s.create_cell("busy")  # generation 1 pending
    s.begin("busy", 0)
    s.record("busy", 0, Outcome.yielded([TextItem("partial")]))
    s.begin("busy", 1)
    s.create_cell("done")  # closed, generation 0 retained
    s.begin("done", 0)
    s.record("done", 0, DONE)
    s.create_cell("gone")  # closed, generation 0 released
    s.begin("gone", 0)
    s.record("gone", 0, DONE)
    s.release("gone", 0)
    return s


REJECTIONS: list[tuple[type[StoreError], Callable[[Any], object]]] = [
    (DuplicateCell, lambda s: s.create_cell("open")),
    (UnknownCell, lambda s: s.begin("nobody", 0)),
    (UnknownCell, lambda s: s.release("nobody", 0)),
    (FutureGeneration, lambda s: s.begin("open", 5)),
    (CellClosed, lambda s: s.begin("done", 1)),
    (ObservationInProgress, lambda s: s.begin("busy", 1)),
    (AlreadyReleased, lambda s: s.begin("gone", 0)),
    (GenerationConflict, lambda s: s.begin("open", 0, {"wait": 2})),
    (NotPending, lambda s: s.record("gone", 0, DONE)),
    (NotPending, lambda s: s.fail("done", 0, "late")),
    (NotReleasable, lambda s: s.release("busy", 1)),
    (NotReleasable, lambda s: s.release("open", 0)),
    (GenerationConflict, lambda s: s.record("done", 0, Outcome.terminated([]))),
]


@pytest.mark.parametrize(
    ("error", "action"), REJECTIONS, ids=[f"{e.__name__}-{i}" for i, (e, _) in enumerate(REJECTIONS)]
)
def test_a_rule_rejection_carries_no_driver_exception(
    store: ObservationStore, error: type[StoreError], action: Callable[[Any], object]
) -> None:
    s = prepared(store)
    with pytest.raises(error) as caught:
        action(s)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_the_quick_start_run_twice_ends_in_a_short_traceback(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    for run in range(2):
        try:
            with ObservationStore.open(path) as store:
                store.session("thread-1").create_cell("cell-1")
        except DuplicateCell as exc:
            assert run == 1
            shown = "".join(traceback.format_exception(exc))
            assert "IntegrityError" not in shown
            assert "During handling" not in shown and "direct cause" not in shown
            assert shown.rstrip().endswith(
                "session 'thread-1', cell 'cell-1': the session already has this cell"
            )


def _hold_the_cell_lock(store_url: str, backend: str) -> Any:
    """Return a context manager whose block runs while another connection holds the write lock."""
    if backend == "sqlite":

        class SqliteLock:
            def __enter__(self) -> None:
                self.conn = sqlite3.connect(store_url, isolation_level=None)
                self.conn.execute("BEGIN IMMEDIATE")

            def __exit__(self, *_: object) -> None:
                self.conn.execute("ROLLBACK")
                self.conn.close()

        return SqliteLock()

    class RowLock:
        def __enter__(self) -> None:
            self.engine = create_engine(store_url)
            self.conn = self.engine.connect()
            self.conn.execute(text("SELECT 1 FROM cells WHERE cell_id = 'c' FOR UPDATE"))

        def __exit__(self, *_: object) -> None:
            self.conn.rollback()
            self.conn.close()
            self.engine.dispose()

    return RowLock()


def test_an_unexpected_driver_error_keeps_its_cause(store_url: str, backend: str) -> None:
    with ObservationStore.open(store_url, busy_timeout=0.2) as store:
        s = store.session("s")
        s.create_cell("c")
        with _hold_the_cell_lock(store_url, backend), pytest.raises(DatabaseBusy) as caught:
            s.begin("c", 0)
        cause = caught.value.__cause__
        assert isinstance(cause, DBAPIError)
        assert cause.orig is not None
        # The store works again once the lock is gone, and nothing was written meanwhile.
        assert s.get("c", 0) is None
        assert s.begin("c", 0) is None
