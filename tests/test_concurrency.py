"""Several processes and threads on one store: no error, no lost row, one winner per race."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from codemode_store import Observation, ObservationStore, Outcome, TextItem
from codemode_store.errors import ObservationInProgress

ROOT = Path(__file__).resolve().parent.parent
CELLS_PER_WORKER = 25
WORKERS = 4

T = TypeVar("T")

# The host loop of the README's API example, on cells of its own; also run by threads (host_loop below).
PROCESS_WORKER = """
import sys
from codemode_store import ObservationStore
from tests.test_concurrency import host_loop
url, name = sys.argv[1], sys.argv[2]
with ObservationStore.open(url) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the others
    host_loop(store, name)
print("done", name, flush=True)
"""


def host_loop(store: ObservationStore, name: str) -> None:
    """Run the host loop on CELLS_PER_WORKER cells of session ``name``."""
    s = store.session(name)
    for i in range(CELLS_PER_WORKER):
        cell = f"cell-{i}"
        s.create_cell(cell)
        assert s.begin(cell, 0) is None
        s.record(cell, 0, Outcome.yielded([TextItem(f"{name}/{cell}/partial")]))
        assert s.begin(cell, 1) is None
        s.record(cell, 1, Outcome.completed([TextItem(f"{name}/{cell}/done")]))
        assert s.release(cell, 1) is True


@pytest.mark.slow
def test_processes_and_threads_share_one_store(store_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # Nobody creates the schema beforehand: the first opens race as well.
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_WORKER, store_url, f"process-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for n in range(WORKERS)
    ]
    with ObservationStore.open(store_url) as store:
        for child in children:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(host_loop, store, f"thread-{n}") for n in range(WORKERS)]
            for future in futures:
                future.result()
        for n, child in enumerate(children):
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert out == f"done process-{n}\n"

        names = [f"process-{n}" for n in range(WORKERS)] + [f"thread-{n}" for n in range(WORKERS)]
        summaries = store.cells()
        assert sorted((c.session_id, c.cell_id) for c in summaries) == sorted(
            (name, f"cell-{i}") for name in names for i in range(CELLS_PER_WORKER)
        )
        for name in names:
            s = store.session(name)
            for i in range(CELLS_PER_WORKER):
                history = s.history(f"cell-{i}")
                assert [(o.generation, o.state, o.kind) for o in history] == [
                    (0, "released", "yielded"),
                    (1, "released", "completed"),
                ]
        assert store.pending() == []


def race(workers: int, action: Callable[[], T]) -> list[T | Exception]:
    """Run ``action`` on ``workers`` threads released at the same instant; return results or errors."""
    barrier = threading.Barrier(workers)

    def contender() -> T | Exception:
        barrier.wait()
        try:
            return action()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: contender(), range(workers)))


def test_racing_begins_on_one_generation_have_one_winner(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        s = store.session("thread-1")
        s.create_cell("cell-1")
        for generation in range(8):
            results = race(4, lambda g=generation: s.begin("cell-1", g))
            winners = [r for r in results if r is None]
            assert len(winners) == 1, results
            others = [r for r in results if r is not None]
            assert all(isinstance(r, ObservationInProgress) for r in others), others
            s.record("cell-1", generation, Outcome.yielded([TextItem(f"output {generation}")]))
            # Once recorded, every late begin is the replay of the same answer.
            replays = race(4, lambda g=generation: s.begin("cell-1", g))
            assert all(isinstance(r, Observation) for r in replays), replays
            assert {r.outcome for r in replays if isinstance(r, Observation)} == {
                Outcome.yielded([TextItem(f"output {generation}")])
            }
        assert [o.state for o in s.history("cell-1")] == ["released"] * 7 + ["retained"]


def test_racing_begins_from_separate_stores_have_one_winner(store_url: str) -> None:
    ObservationStore.open(store_url).close()
    stores = [ObservationStore.open(store_url) for _ in range(4)]
    try:
        stores[0].session("thread-1").create_cell("cell-1")
        results: list[Observation | Exception | None] = []
        barrier = threading.Barrier(len(stores))

        def contender(store: ObservationStore) -> Observation | Exception | None:
            barrier.wait()
            try:
                return store.session("thread-1").begin("cell-1", 0)
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(contender, stores))
        assert results.count(None) == 1, results
        assert all(isinstance(r, ObservationInProgress) for r in results if r is not None), results
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("kind", ["completed", "terminated"])
def test_racing_releases_drop_the_payload_once(store_url: str, kind: str) -> None:
    outcome = Outcome.completed([TextItem("done")]) if kind == "completed" else Outcome.terminated([])
    with ObservationStore.open(store_url) as store:
        s = store.session("thread-1")
        for i in range(6):
            cell = f"cell-{i}"
            s.create_cell(cell)
            s.begin(cell, 0)
            s.record(cell, 0, outcome)
            results = race(4, lambda c=cell: s.release(c, 0))
            assert sorted(results, key=repr) == [False, False, False, True], results
            tombstone = s.get(cell, 0)
            assert tombstone is not None and tombstone.state == "released" and tombstone.outcome is None
            assert tombstone.payload_sha256 is not None and tombstone.released_at is not None
