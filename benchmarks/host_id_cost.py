"""What a host id costs each operation of the host loop: identified store against anonymous.

``python -m benchmarks.host_id_cost [--cells N] [--folder DIR]``. Two stores on
two files of one folder (a tmpfs such as /dev/shm by default, so that fsync
costs nothing and only the work of the store is compared), ``durability="normal"``;
one opened with a host id (fenced ``begin``, owned ``record``, a lease renewed
in the background), one without. The six operations of a cell run on each store
in turn, the order swapped every cell; each operation's median time is printed,
and the ratio identified / anonymous.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from codemode_store import ObservationStore

from .host_loop import HostPayloads

__all__ = ["measure"]

OPERATIONS = ("create_cell", "begin 0", "record 0", "begin 1", "record 1", "release 1")


def _steps(store: ObservationStore, cell: str, payloads: HostPayloads) -> list[Callable[[], object]]:
    s = store.session("s")
    return [
        lambda: s.create_cell(cell),
        lambda: s.begin(cell, 0),
        lambda: s.record(cell, 0, payloads.yielded),
        lambda: s.begin(cell, 1),
        lambda: s.record(cell, 1, payloads.completed),
        lambda: s.release(cell, 1),
    ]


def measure(folder: Path, cells: int) -> dict[str, dict[str, float]]:
    """Return, per operation, the median microseconds of each store and their ratio."""
    payloads = HostPayloads.build()
    stores = {
        "anonymous": ObservationStore.open(folder / "anonymous.db", durability="normal"),
        "host_id": ObservationStore.open(folder / "host-id.db", durability="normal", host_id="bench"),
    }
    times: dict[str, dict[str, list[float]]] = {name: {op: [] for op in OPERATIONS} for name in stores}
    names = itertools.count()
    try:
        for index in range(cells):
            order = list(stores.items()) if index % 2 else list(reversed(stores.items()))
            for name, store in order:
                for op, step in zip(OPERATIONS, _steps(store, f"c{next(names)}", payloads), strict=True):
                    start = time.perf_counter()
                    step()
                    times[name][op].append(time.perf_counter() - start)
    finally:
        for store in stores.values():
            store.close()
    result = {}
    for op in OPERATIONS:
        anonymous = statistics.median(times["anonymous"][op]) * 1e6
        identified = statistics.median(times["host_id"][op]) * 1e6
        result[op] = {"anonymous_us": round(anonymous, 1), "host_id_us": round(identified, 1)}
        result[op]["ratio"] = round(identified / anonymous, 3)
    return result


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.host_id_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cells", type=int, default=3000, help="cells per store (default 3000)")
    parser.add_argument(
        "--folder", type=Path, default=Path("/dev/shm"), help="where the files go (default /dev/shm)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cms-host-id-", dir=args.folder) as tmp:
        result = measure(Path(tmp), args.cells)
    print("| operation | without host id (µs) | with a host id (µs) | ratio |")
    print("|---|---|---|---|")
    for op, figures in result.items():
        print(f"| {op} | {figures['anonymous_us']} | {figures['host_id_us']} | {figures['ratio']}x |")


if __name__ == "__main__":
    main()
