"""Pages each commit writes: the store's host loop against the peer, step by step.

In WAL mode a commit appends one frame per page it changed, so the frames a
step adds to the ``-wal`` file are the pages it wrote, and the commit's cost
grows with them. This counts them for each step of the host loop through the
store (create, begin 0, record yielded, begin 1, record completed, release 1)
and for persist-queue's put, get and ack, and names the b-tree each page
belongs to (SQLite's ``dbstat`` table, where the build has it). For scale it
also times raw sqlite3 transactions that write 1 to 8 pages, or one page with
more statements. Automatic
checkpoints are off while counting, and a sample during which the WAL was
reset anyway is left out.

    .venv/bin/python -m benchmarks.wal_pages [--cells N]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from codemode_store import ObservationStore
from codemode_store.store import StoreSession

from .host_loop import HostPayloads, open_peer, peer_available

__all__ = ["StepPages", "WalCounter", "main", "peer_pages", "store_pages"]

_WAL_HEADER = 32
_FRAME_HEADER = 24

#: A step's name and the call that makes it.
Step = tuple[str, Callable[[], object]]

#: Per step, the pages each sample wrote, and which b-trees they belonged to.
StepPages = dict[str, tuple[list[int], Counter[str]]]


class WalCounter:
    """Reads the frames a WAL file holds: their page numbers, and the header's salt."""

    def __init__(self, database: Path, page_size: int) -> None:
        """Count the frames of ``database``'s ``-wal`` file (pages of ``page_size`` bytes)."""
        self.database = database
        self.wal = database.with_name(database.name + "-wal")
        self.frame = page_size + _FRAME_HEADER

    def state(self) -> tuple[bytes, int]:
        """Return the WAL's salt (it changes when the WAL is reset) and how many frames it holds."""
        try:
            data = self.wal.read_bytes()
        except FileNotFoundError:
            return b"", 0
        return data[16:24], max(0, (len(data) - _WAL_HEADER) // self.frame)

    def pages(self, first: int) -> list[int]:
        """Return the page number of every frame from frame ``first`` on."""
        data = self.wal.read_bytes()
        offsets = range(_WAL_HEADER + first * self.frame, len(data) - self.frame + 1, self.frame)
        return [struct.unpack(">I", data[offset : offset + 4])[0] for offset in offsets]

    def btrees(self) -> dict[int, str]:
        """Return the b-tree (table or index) of each page, or nothing without ``dbstat``."""
        conn = sqlite3.connect(self.database)
        try:
            return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            return {}
        finally:
            conn.close()


def _count(counter: WalCounter, steps: Sequence[Step], found: StepPages) -> None:
    for name, step in steps:
        salt, before = counter.state()
        step()
        salt_after, after = counter.state()
        if salt_after != salt or after < before:
            continue  # the WAL was reset under this step: its frames cannot be told apart
        written = counter.pages(before)
        samples, btrees = found.setdefault(name, ([], Counter()))
        samples.append(len(written))
        names = counter.btrees()
        btrees.update(names.get(page, f"page {page}") for page in written)


@contextmanager
def _no_autocheckpoint(store: ObservationStore) -> Iterator[None]:
    def off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")

    store.engine.dispose()
    event.listen(store.engine, "connect", off)
    try:
        yield
    finally:
        event.remove(store.engine, "connect", off)


def _cell_steps(s: StoreSession, cell: str, payloads: HostPayloads) -> list[Step]:
    return [
        ("create", lambda: s.create_cell(cell)),
        ("begin 0", lambda: s.begin(cell, 0)),
        ("record yielded", lambda: s.record(cell, 0, payloads.yielded)),
        ("begin 1", lambda: s.begin(cell, 1)),
        ("record completed", lambda: s.record(cell, 1, payloads.completed)),
        ("release 1", lambda: s.release(cell, 1)),
    ]


def store_pages(folder: Path, cells: int, warm: int = 200) -> StepPages:
    """Return the pages each host-loop step of the store writes, over ``cells`` cells."""
    payloads = HostPayloads.build()
    path = folder / "store.db"
    found: StepPages = {}
    with ObservationStore.open(path, durability="normal") as store, _no_autocheckpoint(store):
        s = store.session("s")
        counter = WalCounter(path, 4096)
        for index in range(warm + cells):
            steps = _cell_steps(s, f"cell-{index}", payloads)
            if index < warm:  # a file of some size first, as a host's would be
                for _name, step in steps:
                    step()
            else:
                _count(counter, steps, found)
    return found


def _queue_steps(
    queue: Any, outcome: dict[str, Any], taken: list[Any]
) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("put", lambda: queue.put(outcome)),
        ("get", lambda: taken.append(queue.get(block=False))),
        ("ack", lambda: queue.ack(taken.pop())),
    ]


def peer_pages(folder: Path, cells: int, warm: int = 200) -> StepPages:
    """Return the pages persist-queue's put, get and ack write, over ``cells`` cells' outcomes."""
    payloads = HostPayloads.build()
    queue = open_peer(folder / "peer", "NORMAL")
    found: StepPages = {}
    try:
        for connection in (getattr(queue, "_putter", None), getattr(queue, "_getter", None)):
            if connection is not None:
                connection.execute("PRAGMA wal_autocheckpoint = 0")
        counter = WalCounter(folder / "peer" / "data.db", 4096)
        wire = payloads.yielded.to_wire("c"), payloads.completed.to_wire("c")
        taken: list[Any] = []
        for index in range(warm + cells):
            for outcome in wire:
                steps = _queue_steps(queue, outcome, taken)
                if index < warm:
                    for _name, step in steps:
                        step()
                else:
                    _count(counter, steps, found)
    finally:
        queue.close()
    return found


def commit_costs(folder: Path, repeat: int = 3000) -> dict[str, float]:
    """Return raw sqlite3's microseconds per write transaction by pages and statements (NORMAL).

    The profile behind the page counts: what one more page, or one more
    statement on the same page, adds to a commit on this machine.
    """
    conn = sqlite3.connect(folder / "costs.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for table in range(8):  # one small table each: one page each
            conn.execute(f"CREATE TABLE t{table} (k INTEGER PRIMARY KEY, v INTEGER)")
            conn.execute(f"INSERT INTO t{table} VALUES (1, 0)")

        def transaction(tables: Sequence[int]) -> Callable[[], None]:
            def run() -> None:
                conn.execute("BEGIN IMMEDIATE")
                for table in tables:
                    conn.execute(f"UPDATE t{table} SET v = v + 1 WHERE k = 1")
                conn.execute("COMMIT")

            return run

        shapes = {"no change": transaction(())}
        shapes |= {f"{n} page(s), {n} statement(s)": transaction(range(n)) for n in (1, 2, 4, 8)}
        shapes |= {f"1 page, {n} statements": transaction([0] * n) for n in (2, 4, 8)}
        costs: dict[str, float] = {}
        for name, run in shapes.items():
            run()
            start = time.perf_counter()
            for _ in range(repeat):
                run()
            costs[name] = (time.perf_counter() - start) / repeat * 1e6
        return costs
    finally:
        conn.close()


def _print(title: str, found: StepPages, per_cell: int) -> float:
    print(f"{title}: median pages per step (b-trees written, per step)")
    total = 0.0
    for name, (samples, btrees) in found.items():
        middle = statistics.median(samples)
        total += middle
        share = ", ".join(f"{tree} {count / len(samples):.2f}" for tree, count in btrees.most_common())
        print(f"  {name:18s} {middle:4.1f}   ({share})")
    total *= per_cell
    print(f"  {'a cell':18s} {total:4.1f}")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Print the pages per step of the store's host loop and, if installed, of the peer."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wal_pages", description=__doc__)
    parser.add_argument("--cells", type=int, default=200, help="cells counted (after 200 untimed ones)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cms-wal-") as tmp:
        _print("store", store_pages(Path(tmp), args.cells), 1)
        print("raw sqlite3, one write transaction (synchronous=NORMAL), microseconds:")
        for name, micros in commit_costs(Path(tmp)).items():
            print(f"  {name:28s} {micros:6.1f}")
        if peer_available():
            # Two outcomes a cell: put, get and ack each twice.
            _print("persist-queue SQLiteAckQueue", peer_pages(Path(tmp), args.cells), 2)
        else:
            print("persist-queue not installed (pip install -e '.[bench]'): no peer figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
