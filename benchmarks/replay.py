"""Replay at scale: ``get`` and ``begin``-replay latency with 10^3 … 10^6 observations.

Each file is created by ``ObservationStore.open`` (so its schema is Alembic's)
and filled fast with raw ``executemany`` inserts in one transaction: cells of
ten generations, the first nine released (tombstones), the last one retained.
Lookups of random cells run in alternating rounds over the files; the baseline
of every size is the smallest file, measured in the same rounds.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from codemode_store import ObservationStore
from codemode_store.wire import encode_payload

from .common import percentile, text_outcome
from .raw import RawHost

__all__ = ["GENERATIONS", "build", "measure"]

GENERATIONS = 10
CELLS_PER_SESSION = 100
PAYLOAD_SIZE = 512


def _cell(index: int) -> tuple[str, str]:
    return f"session-{index // CELLS_PER_SESSION}", f"cell-{index % CELLS_PER_SESSION}"


def build(path: Path, rows: int) -> int:
    """Write a store file holding ``rows`` observations (rounded to whole cells); return the cells."""
    ObservationStore.open(path).close()
    payload = encode_payload(text_outcome(PAYLOAD_SIZE))
    sha = hashlib.sha256(payload).digest()
    cells = max(1, rows // GENERATIONS)
    now = time.time_ns() // 1000

    def cell_rows() -> Iterator[tuple[object, ...]]:
        for index in range(cells):
            yield (*_cell(index), GENERATIONS - 1, now)

    def observation_rows() -> Iterator[tuple[object, ...]]:
        for index in range(cells):
            session, cell = _cell(index)
            for generation in range(GENERATIONS - 1):
                yield (
                    session,
                    cell,
                    generation,
                    "released",
                    "yielded",
                    len(payload),
                    sha,
                    now,
                    now,
                    now,
                    None,
                )
            yield (
                session,
                cell,
                GENERATIONS - 1,
                "retained",
                "yielded",
                len(payload),
                sha,
                now,
                now,
                None,
                payload,
            )

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a scratch file: build it fast
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO cells (session_id, cell_id, closed, last_generation, created_at) "
            "VALUES (?, ?, 0, ?, ?)",
            cell_rows(),
        )
        conn.executemany(
            "INSERT INTO observations (session_id, cell_id, generation, state, kind, payload_bytes, "
            "payload_sha256, begun_at, recorded_at, released_at, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            observation_rows(),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return cells


def measure(folder: Path, sizes: list[int], lookups: int, rounds: int, seed: int = 5) -> dict[str, object]:
    """Return p50/p99 (µs) of store ``get``, store ``begin`` replay and raw select at each size."""
    rng = random.Random(seed)
    opened: dict[int, tuple[ObservationStore, RawHost, int]] = {}
    build_seconds: dict[int, float] = {}
    for size in sizes:
        path = folder / f"replay-{size}.db"
        start = time.perf_counter()
        cells = build(path, size)
        build_seconds[size] = round(time.perf_counter() - start, 2)
        opened[size] = (ObservationStore.open(path), RawHost(str(path)), cells)
    samples: dict[str, dict[int, list[float]]] = {
        op: {size: [] for size in sizes} for op in ("get", "begin", "raw")
    }
    last = GENERATIONS - 1
    try:
        for index in range(rounds):
            shift = index % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                store, raw, cells = opened[size]
                for lookup in range(lookups):
                    session_id, cell_id = _cell(rng.randrange(cells))
                    session = store.session(session_id)
                    steps: dict[str, Callable[[], object]] = {
                        "get": partial(session.get, cell_id, last),
                        "begin": partial(session.begin, cell_id, last),
                        "raw": partial(raw.get, session_id, cell_id, last),
                    }
                    names = list(steps)
                    # Rotate which one reads the (colder) pages first.
                    names = names[lookup % 3 :] + names[: lookup % 3]
                    for name in names:
                        start = time.perf_counter()
                        result = steps[name]()
                        samples[name][size].append(time.perf_counter() - start)
                        if result is None:
                            raise AssertionError(f"{name} of {session_id}/{cell_id} found no observation")
    finally:
        for store, raw, _cells in opened.values():
            store.close()
            raw.close()

    def micros(values: list[float], fraction: float) -> float:
        return round(percentile(values, fraction) * 1e6, 1)

    return {
        "build_seconds": build_seconds,
        "latency_us": {
            op: {
                size: {"p50": micros(values, 0.5), "p99": micros(values, 0.99)}
                for size, values in by_size.items()
            }
            for op, by_size in samples.items()
        },
    }
