"""Measure how many bytes one tombstone costs in a SQLite store, after vacuum.

    PYTHONPATH=. .venv/bin/python benchmarks/tombstone_size.py [--tombstones 20000] [--per-cell 100]

Builds an empty store and one holding N released observations with short ids
(``s``, ``c00001``; ``--per-cell`` generations per cell, all acknowledged the
way a host sees it: begin(g+1) releases g, the last one by ``release``),
vacuums both, and prints the difference per tombstone, with the share of the
table and of each index (from SQLite's ``dbstat``) to show where the bytes go.
A size is a count of bytes, not a time, so one run is enough.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path

from codemode_store import ObservationStore, Outcome, TextItem

TARGET_BYTES = 200


def fill(store: ObservationStore, tombstones: int, per_cell: int) -> None:
    """Write ``tombstones`` released observations into session ``s``."""
    session = store.session("s")
    written = 0
    cell_number = 0
    while written < tombstones:
        cell = f"c{cell_number:05d}"
        cell_number += 1
        session.create_cell(cell)
        generations = min(per_cell, tombstones - written)
        for generation in range(generations):
            session.begin(cell, generation)
            last = generation == generations - 1
            item = [TextItem(f"output {generation}")]
            session.record(cell, generation, Outcome.completed(item) if last else Outcome.yielded(item))
        session.release(cell, generations - 1)
        written += generations


def vacuumed_size(path: Path, full: bool) -> int:
    """Vacuum the store at ``path`` (incrementally, or rewriting it) and return its file size."""
    with ObservationStore.open(path) as store:
        report = store.vacuum(full=full)
    assert report.after.freelist_count == 0 and report.checkpointed
    return report.after.file_bytes


def table_bytes(path: Path) -> dict[str, int]:
    """Return the bytes of the pages each table and index takes."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY name")
        return {str(name): int(pages) for name, pages in rows}


def main() -> None:
    """Build both stores and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tombstones", type=int, default=20000)
    parser.add_argument("--per-cell", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        empty, full = Path(folder, "empty.db"), Path(folder, "tombstones.db")
        ObservationStore.open(empty).close()
        with ObservationStore.open(full) as store:
            fill(store, args.tombstones, args.per_cell)
            counts = store.cells("s")
            assert sum(cell.observations for cell in counts) == args.tombstones
            assert all(cell.retained_bytes == 0 for cell in counts)
        # As written (pages as the B-tree splits left them), then packed by VACUUM.
        empty_size, written_size = vacuumed_size(empty, False), vacuumed_size(full, False)
        written_tables = table_bytes(full)
        packed_size = vacuumed_size(full, True)
        empty_tables, packed_tables = table_bytes(empty), table_bytes(full)
    cells = -(-args.tombstones // args.per_cell)
    written = (written_size - empty_size) / args.tombstones
    packed = (packed_size - empty_size) / args.tombstones
    print(f"tombstones: {args.tombstones} in {cells} cells ({args.per_cell} generations a cell)")
    print(f"empty store:                          {empty_size:>10} bytes")
    print(f"with tombstones, incremental vacuum:  {written_size:>10} bytes = {written:6.1f} a tombstone")
    print(f"with tombstones, full VACUUM:         {packed_size:>10} bytes = {packed:6.1f} a tombstone")
    print(f"(target <= {TARGET_BYTES} bytes a tombstone, cell rows included)")
    print(f"  {'bytes a tombstone, by table or index':<40} {'written':>8} {'packed':>8}")
    for name in packed_tables:
        base = empty_tables.get(name, 0)
        grown_written = (written_tables.get(name, 0) - base) / args.tombstones
        grown_packed = (packed_tables[name] - base) / args.tombstones
        print(f"  {name:<40} {grown_written:>8.1f} {grown_packed:>8.1f}")
    print("within target" if max(written, packed) <= TARGET_BYTES else "OVER TARGET")


if __name__ == "__main__":
    main()
