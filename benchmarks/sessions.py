"""Many sessions of one process: one store, each session's host loop in a thread (or task) of its own.

Every session runs the host loop of ``host_loop.py`` (create, begin 0, record a
2 KB yield, begin 1, record a 2 KB completion, release it: six writes a cell)
on a session of its own, all started at a barrier. A failing call is counted
(``DatabaseBusy`` above all) and the loop goes on. Reported per run: cells/s
over the span from the barrier to the last finish, errors, p50/p99 latency of
one call, and from the store's group commit its transactions (commits/s,
operations per commit). On the lossy FUSE filesystem of ``scripts/lossyfs.py``
(a disk whose every sync takes some milliseconds) the filesystem's own
counters give the syncs per second as well.

The baselines, in the same run: the store with group commit switched off (each
write its own transaction, as before issue 20), and persist-queue's
``SQLiteAckQueue`` shared by as many producer threads (put, get, ack of the
same two outcomes: six commits a cell, at its default ``synchronous=FULL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from codemode_store import ObservationStore
from codemode_store.engine import Durability

from .common import median, percentile
from .host_loop import HostPayloads, peer_tidy

__all__ = ["SessionRun", "run_async_sessions", "run_peer", "run_sessions", "slow_disk"]

SessionRun = dict[str, Any]


def _host_loop(
    store: ObservationStore, session_id: str, cells: int, payloads: HostPayloads, latencies: list[float]
) -> list[str]:
    """Run ``cells`` cells of the host loop, timing each call; return the errors."""
    s = store.session(session_id)
    yielded, completed = payloads.yielded, payloads.completed
    steps: tuple[Callable[[str], object], ...] = (
        lambda cell: s.create_cell(cell),
        lambda cell: s.begin(cell, 0),
        lambda cell: s.record(cell, 0, yielded),
        lambda cell: s.begin(cell, 1),
        lambda cell: s.record(cell, 1, completed),
        lambda cell: s.release(cell, 1),
    )
    errors: list[str] = []
    clock = time.perf_counter
    for n in range(cells):
        cell = f"cell-{n}"
        for step in steps:
            start = clock()
            try:
                step(cell)
            except Exception as exc:  # every failure counts; the cell is given up
                errors.append(f"{type(exc).__name__}: {exc}")
                break
            finally:
                latencies.append(clock() - start)
    return errors


def _figures(store: Any) -> tuple[int, int]:
    group = getattr(store, "_group", None)
    return (0, 0) if group is None else (group.figures.commits, group.figures.operations)


def _summary(
    sessions: int,
    cells: int,
    seconds: float,
    latencies: list[float],
    errors: list[str],
    commits: int,
    operations: int,
) -> SessionRun:
    done = sessions * cells
    return {
        "sessions": sessions,
        "cells": done,
        "seconds": round(seconds, 4),
        "cells_per_s": round(done / seconds, 1) if seconds > 0 else float("inf"),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3) if latencies else None,
        "commits": commits,
        "commits_per_s": round(commits / seconds, 1) if seconds > 0 else None,
        "ops_per_commit": round(operations / commits, 2) if commits else None,
    }


def run_sessions(
    url: str | Path,
    sessions: int,
    cells: int,
    *,
    durability: Durability = "full",
    group_commit: bool = True,
    counter: Callable[[], int] | None = None,
) -> SessionRun:
    """Run ``sessions`` threads of ``cells`` cells each on one store at ``url``; return the figures.

    ``group_commit=False`` runs every write in its own transaction (the store
    before issue 20); ``counter`` returns the disk's syncs so far.
    """
    payloads = HostPayloads.build()
    with ObservationStore.open(url, durability=durability) as store:
        if not group_commit:
            store._group = None
        prefix = f"run-{time.monotonic_ns()}"
        barrier = threading.Barrier(sessions + 1)
        latencies: list[list[float]] = [[] for _ in range(sessions)]
        errors: list[list[str]] = [[] for _ in range(sessions)]

        def worker(index: int) -> None:
            barrier.wait()
            errors[index] = _host_loop(store, f"{prefix}-{index}", cells, payloads, latencies[index])

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(sessions)]
        for thread in threads:
            thread.start()
        commits, operations = _figures(store)
        syncs = counter() if counter else 0
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        syncs = (counter() - syncs) if counter else 0
        commits_after, operations_after = _figures(store)
    result = _summary(
        sessions,
        cells,
        seconds,
        [t for values in latencies for t in values],
        [e for values in errors for e in values],
        commits_after - commits,
        operations_after - operations,
    )
    if counter:
        result["fsyncs"] = syncs
        result["fsyncs_per_s"] = round(syncs / seconds, 1)
    return result


def run_async_sessions(
    path: Path, sessions: int, cells: int, *, durability: Durability = "full"
) -> SessionRun:
    """Run ``sessions`` asyncio tasks of ``cells`` cells each on one ``AsyncObservationStore``."""
    from codemode_store.aio import AsyncObservationStore, AsyncStoreSession

    payloads = HostPayloads.build()
    steps: tuple[Callable[[AsyncStoreSession, str], Awaitable[object]], ...] = (
        lambda s, cell: s.create_cell(cell),
        lambda s, cell: s.begin(cell, 0),
        lambda s, cell: s.record(cell, 0, payloads.yielded),
        lambda s, cell: s.begin(cell, 1),
        lambda s, cell: s.record(cell, 1, payloads.completed),
        lambda s, cell: s.release(cell, 1),
    )

    async def main() -> SessionRun:
        async with AsyncObservationStore.open(path, durability=durability) as store:
            latencies: list[float] = []
            errors: list[str] = []
            prefix = f"async-{time.monotonic_ns()}"
            clock = time.perf_counter

            async def worker(index: int) -> None:
                s = store.session(f"{prefix}-{index}")
                for n in range(cells):
                    cell = f"cell-{n}"
                    for step in steps:
                        begun = clock()
                        try:
                            await step(s, cell)
                        except Exception as exc:
                            errors.append(f"{type(exc).__name__}: {exc}")
                            break
                        finally:
                            latencies.append(clock() - begun)

            commits, operations = _figures(store)
            start = clock()
            await asyncio.gather(*(worker(n) for n in range(sessions)))
            seconds = clock() - start
            after = _figures(store)
            return _summary(
                sessions, cells, seconds, latencies, errors, after[0] - commits, after[1] - operations
            )

    return asyncio.run(main())


def run_peer(folder: Path, producers: int, cells: int) -> SessionRun:
    """Run ``producers`` threads of put/get/ack on one persist-queue ``SQLiteAckQueue`` (its default FULL)."""
    from persistqueue import SQLiteAckQueue

    payloads = HostPayloads.build()
    yielded, completed = payloads.yielded.to_wire("c"), payloads.completed.to_wire("c")
    queue = SQLiteAckQueue(str(folder), auto_resume=False, multithreading=True)
    barrier = threading.Barrier(producers + 1)
    latencies: list[list[float]] = [[] for _ in range(producers)]
    errors: list[str] = []

    def worker(index: int) -> None:
        clock = time.perf_counter
        barrier.wait()
        for _ in range(cells):
            try:
                for body in (yielded, completed):
                    begun = clock()
                    queue.put(body)
                    latencies[index].append(clock() - begun)
                    begun = clock()
                    queue.ack(queue.get(block=False))
                    latencies[index].append(clock() - begun)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(producers)]
    try:
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        peer_tidy(queue)
    finally:
        queue.close()
    return _summary(producers, cells, seconds, [t for v in latencies for t in v], errors, 0, 0)


@contextlib.contextmanager
def slow_disk(fsync_delay: float) -> Iterator[tuple[Path, Callable[[], int]]]:
    """Yield a folder on a lossy FUSE mount whose syncs take ``fsync_delay`` s, and its sync counter.

    Raises ``RuntimeError`` (with the reason) where FUSE cannot be mounted.
    """
    from scripts.lossyfs import LossyMount, fuse_unavailable

    with tempfile.TemporaryDirectory(prefix="cms-slow-disk-") as tmp:
        folder = Path(tmp)
        reason = fuse_unavailable(folder / "probe")
        if reason is not None:
            raise RuntimeError(reason)
        backing, mountpoint = folder / "backing", folder / "mount"
        backing.mkdir()
        mountpoint.mkdir()
        with LossyMount(backing, mountpoint, fsync_delay=fsync_delay) as mount:
            yield mountpoint, lambda: mount.stats()[0]


def best_of(runs: list[SessionRun]) -> SessionRun:
    """Return the run of median cells/s among repeated runs of one variant (ranges kept)."""
    ordered = sorted(runs, key=lambda run: run["cells_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["cells_per_s_range"] = [ordered[0]["cells_per_s"], ordered[-1]["cells_per_s"]]
    chosen["errors"] = sum(run["errors"] for run in runs)
    chosen["median_cells_per_s"] = median([run["cells_per_s"] for run in runs])
    return chosen


def new_database(folder: Path, name: str) -> Path:
    """Return the path of a new store file in ``folder`` (its schema made untimed)."""
    path = folder / f"{name}-{time.monotonic_ns()}.db"
    ObservationStore.open(path).close()
    return path


def peer_folder(folder: Path, name: str) -> Path:
    """Return a new folder for a persist-queue."""
    path = folder / f"{name}-{time.monotonic_ns()}"
    path.mkdir()
    return path


# -- the section of benchmarks/run.py --------------------------------------------------------------------


def _rounds(variants: dict[str, Callable[[], SessionRun]], rounds: int) -> dict[str, SessionRun]:
    """Run every variant ``rounds`` times in rotating order; keep each one's median run (ranges kept)."""
    runs: dict[str, list[SessionRun]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(variants[name]())
    return {name: best_of(values) for name, values in runs.items()}


def _per_session(total: int, sessions: int) -> int:
    return max(1, total // sessions)


def measure_local(folder: Path, total: int, rounds: int, with_peer: bool) -> dict[str, SessionRun]:
    """Sessions on this machine's disk: 1, 16, 64 at ``full``, 1 and 16 at ``normal``, baselines, asyncio."""

    def store(sessions: int, durability: Durability = "full", group: bool = True) -> Callable[[], SessionRun]:
        return lambda: run_sessions(
            new_database(folder, "sessions"),
            sessions,
            _per_session(total, sessions),
            durability=durability,
            group_commit=group,
        )

    def tasks(sessions: int) -> Callable[[], SessionRun]:
        return lambda: run_async_sessions(
            new_database(folder, "tasks"), sessions, _per_session(total, sessions)
        )

    variants: dict[str, Callable[[], SessionRun]] = {
        "1 full": store(1),
        "16 full": store(16),
        "64 full": store(64),
        "1 normal": store(1, "normal"),
        "16 normal": store(16, "normal"),
        "16 full, no group commit": store(16, group=False),
        "asyncio 1 full": tasks(1),
        "asyncio 16 full": tasks(16),
        "asyncio 64 full": tasks(64),
    }
    if with_peer:
        variants["peer 16 producers"] = lambda: run_peer(peer_folder(folder, "peer"), 16, total // 16)
    return _rounds(variants, rounds)


def measure_slow_disk(delay: float, total: int, rounds: int) -> dict[str, SessionRun]:
    """Sessions on a disk whose syncs take ``delay`` s more: 1, 16, 64, 256 (16 without group commit too)."""
    with slow_disk(delay) as (folder, counter):

        def store(sessions: int, cells: int, group: bool = True) -> Callable[[], SessionRun]:
            return lambda: run_sessions(
                new_database(folder, "slow"), sessions, cells, group_commit=group, counter=counter
            )

        variants = {
            "1 full": store(1, max(2, total // 8)),
            "16 full": store(16, _per_session(total, 16)),
            "64 full": store(64, _per_session(total, 64)),
            "256 full": store(256, _per_session(total, 256)),
            "16 full, no group commit": store(16, max(1, total // 64), group=False),
        }
        return _rounds(variants, rounds)


def measure_postgres(server_url: str, total: int, rounds: int) -> dict[str, SessionRun]:
    """Sessions of one process on PostgreSQL (no group commit: the server groups commits): 1, 4, 16."""
    from .postgres import scratch_database

    with scratch_database(server_url) as url:
        ObservationStore.open(url).close()  # the schema, by Alembic

        def store(sessions: int) -> Callable[[], SessionRun]:
            return lambda: run_sessions(url, sessions, _per_session(total, sessions))

        return _rounds({f"{n} sessions": store(n) for n in (1, 4, 16)}, rounds)
