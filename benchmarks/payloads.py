"""Large payloads: record + get of image data URLs against raw sqlite3 insert + select.

The raw baseline inserts the very bytes the store keeps for that outcome into a
one-table file (same pragmas, one ``BEGIN IMMEDIATE`` transaction) and selects
them back: the floor of SQLite itself, with no encoding, hashing or decoding.
For context, the store's own statements run in plain sqlite3 on a file of the
store's schema too (``raw.RawHost``: record, then get with ``json.loads``).
Peak memory of the store's record + get is measured two ways, each as a
multiple of the payload size: ``tracemalloc`` (Python allocations only) and the
process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``; it also
sees SQLite's own buffers), when the kernel allows it.
"""

from __future__ import annotations

import gc
import itertools
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

from codemode_store import ObservationStore, Outcome
from codemode_store.wire import encode_payload

from .common import alternate, image_outcome, median, ratio
from .raw import RawHost

__all__ = ["measure"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class _Raw:
    """The floor: insert a blob in one immediate transaction, select it back."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute("CREATE TABLE IF NOT EXISTS blobs (k INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        self.keys = itertools.count()

    def put_get(self, data: bytes) -> bytes:
        key = next(self.keys)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO blobs (k, data) VALUES (?, ?)", (key, data))
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")
        row = self.conn.execute("SELECT data FROM blobs WHERE k = ?", (key,)).fetchone()
        self.conn.execute("COMMIT")
        self.conn.execute("DELETE FROM blobs WHERE k = ?", (key,))  # keep the file small
        return bytes(row[0])


class _RawStoreSchema:
    """Context: the store's own statements in plain sqlite3 (``raw.RawHost``) on a file of its schema."""

    def __init__(self, path: Path) -> None:
        ObservationStore.open(path).close()  # the schema, by Alembic
        self.host = RawHost(str(path), synchronous="NORMAL")
        self.cells = itertools.count()
        self.ready: list[str] = []

    def prepare(self) -> None:
        cell = f"cell-{next(self.cells)}"
        self.host.create_cell("payloads", cell)
        self.host.begin("payloads", cell, 0)
        self.ready.append(cell)

    def record_get(self, body: dict[str, Any]) -> Any:
        cell = self.ready.pop()
        self.host.record("payloads", cell, 0, body)
        return self.host.get("payloads", cell, 0)


class _Store:
    """The store: a pending generation made ready untimed, then record + get."""

    def __init__(self, path: Path) -> None:
        # The raw floor runs at synchronous=NORMAL: the store at the same setting.
        self.store = ObservationStore.open(path, durability="normal")
        self.session = self.store.session("payloads")
        self.cells = itertools.count()
        self.ready: list[str] = []
        self.recorded: list[str] = []

    def prepare(self) -> None:
        cell = f"cell-{next(self.cells)}"
        self.session.create_cell(cell)
        self.session.begin(cell, 0)
        self.ready.append(cell)

    def record_get(self, outcome: Outcome) -> Outcome | None:
        cell = self.ready.pop()
        self.session.record(cell, 0, outcome)
        got = self.session.get(cell, 0)
        self.recorded.append(cell)
        return None if got is None else got.outcome

    def release(self) -> None:
        """Release what was recorded (untimed), so the file does not grow with every round."""
        while self.recorded:
            self.session.release(self.recorded.pop(), 0)


def measure(folder: Path, sizes: list[int], rounds: int) -> dict[int, dict[str, object]]:
    """Return, per payload size, store and raw median seconds, their ratio, and peak memory."""
    store = _Store(folder / "payload-store.db")
    raw = _Raw(folder / "payload-raw.db")
    same = _RawStoreSchema(folder / "payload-same.db")
    results: dict[int, dict[str, object]] = {}
    try:
        for size in sizes:
            outcome = image_outcome(size)
            data = encode_payload(outcome)
            payload_size = len(data)

            def store_once(outcome: Outcome = outcome) -> None:
                if store.record_get(outcome) != outcome:
                    raise AssertionError("the store did not return the payload it kept")

            def raw_once(data: bytes = data) -> None:
                if raw.put_get(data) != data:
                    raise AssertionError("raw sqlite3 did not return the payload")

            body = outcome.to_wire("c")
            del body["cell_id"]

            def same_once(body: dict[str, Any] = body) -> None:
                same.record_get(body)

            for _ in range(rounds + 2):
                store.prepare()
                same.prepare()
            times = alternate(
                {"store": store_once, "raw": raw_once, "same": same_once}, rounds, between=store.release
            )
            memory = _peak_memory(store, outcome, payload_size)
            results[size] = {
                "payload_bytes": payload_size,
                "store_s": round(median(times["store"]), 6),
                "raw_s": round(median(times["raw"]), 6),
                "ratio": ratio(median(times["store"]), median(times["raw"])),
                "same_schema_s": round(median(times["same"]), 6),
                "same_schema_ratio": ratio(median(times["store"]), median(times["same"])),
                **memory,
            }
            del outcome, data
            gc.collect()
    finally:
        store.store.close()
        raw.conn.close()
        same.host.close()
    return results


def _peak_memory(store: _Store, outcome: Outcome, payload_size: int) -> dict[str, object]:
    """Measure one record + get: Python peak (tracemalloc) and peak RSS growth, per payload byte."""
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = store.record_get(outcome)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    store.release()
    gc.collect()
    rss_multiple: float | None = None
    rss_before = _status_kib("VmRSS")
    if rss_before is not None and _reset_peak_rss():
        result = store.record_get(outcome)
        peak_rss = _status_kib("VmHWM")
        del result
        store.release()
        if peak_rss is not None:
            rss_multiple = round(max(0, peak_rss - rss_before) * 1024 / payload_size, 2)
    return {
        "peak_tracemalloc_x": round((peak - start) / payload_size, 2),
        "peak_rss_x": rss_multiple,
    }
