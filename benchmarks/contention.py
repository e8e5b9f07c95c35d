"""Contention: several processes run the host loop on one file at once.

Each worker process opens its own store (or raw connection) on the shared file,
waits at a barrier, then runs the host loop for its own session; a failing cell
is counted as an error and the loop goes on. Total cells/s is every worker's
cells over the span from the first start to the last finish.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from codemode_store import ObservationStore

from .host_loop import HostPayloads, raw_cells, store_cells
from .raw import RawHost

__all__ = ["run_contention"]


def _worker(kind: str, path: str, worker: int, cells: int, barrier: Barrier, results: Any) -> None:
    payloads = HostPayloads.build()
    session = f"worker-{worker}"
    errors: list[str] = []
    if kind == "store":
        host: Any = ObservationStore.open(path)  # the default durability, full
    else:
        host = RawHost(path, synchronous="FULL")  # the same durability
    barrier.wait()
    start = time.monotonic()
    for index in range(cells):
        cell = [f"cell-{index}"]
        try:
            if kind == "store":
                store_cells(host, session, cell, payloads)
            else:
                raw_cells(host, session, cell, payloads)
        except Exception as exc:  # every failure counts; the run goes on
            errors.append(f"{type(exc).__name__}: {exc}")
    end = time.monotonic()
    host.close()
    results.put((start, end, cells - len(errors), errors))


def run_contention(folder: Path, kind: str, processes: int, cells: int) -> dict[str, object]:
    """Run ``processes`` workers of ``kind`` ("store" or "raw") on one new file."""
    path = folder / f"contention-{kind}.db"
    ObservationStore.open(path).close()
    # fork starts a worker in milliseconds; the parent holds no open store here.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(kind, str(path), n, cells, barrier, results))
        for n in range(processes)
    ]
    for process in workers:
        process.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for process in workers:
        process.join()
    crashed = sum(1 for process in workers if process.exitcode != 0)
    first = min(start for start, _end, _cells, _errors in outcomes)
    last = max(end for _start, end, _cells, _errors in outcomes)
    done = sum(count for _start, _end, count, _errors in outcomes)
    errors = [message for *_rest, messages in outcomes for message in messages]
    return {
        "processes": processes,
        "cells": done,
        "seconds": round(last - first, 4),
        "cells_per_s": round(done / (last - first), 1) if last > first else float("inf"),
        "errors": len(errors) + crashed,
        "first_error": errors[0] if errors else None,
    }
