"""The cost of verifying each payload's sha256 on read: the store against itself without the check.

Every read that hands a payload out (``get``, ``begin``'s replay, ``history``,
``observe``'s replay) checks it is the recorded bytes: one sha256 over them
(``damage.checked_payload``). The baseline is the same store in the same run
with that one function swapped for a version that checks the storage class and
length but hashes nothing, the variants alternating round after round:

- the host loop (``host_loop.store_cells``: create, begin, record, begin,
  record, release per cell), which reads no payload back;
- ``get`` of a 2 KB text outcome (the host loop's payload);
- ``get`` of one image outcome of 1 MB and of 64 MiB (the default
  ``max_payload_bytes``).

Run: ``python -m benchmarks.verify_cost [--rounds N] [--cells N] [--sizes 1048576,67108000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from codemode_store import ObservationStore, Outcome, operations
from codemode_store.damage import damaged, storage_class
from codemode_store.wire import encode_payload

from .common import alternate, image_outcome, median, ratio, text_outcome
from .host_loop import HostPayloads, store_cells

__all__ = ["measure"]

_VERIFIED = operations.checked_payload


def _unverified(stored: Any, size: Any, sha256: Any, *key: Any) -> bytes:
    """The baseline: the storage class and the length checked, no hash."""
    if type(stored) is not bytes:
        raise damaged(f"the payload is stored as {storage_class(stored)}", *key)
    if size != len(stored):
        raise damaged("the payload's length differs", *key)
    return stored


@contextlib.contextmanager
def _hashing(on: bool) -> Iterator[None]:
    operations.checked_payload = _VERIFIED if on else _unverified  # type: ignore[assignment]
    try:
        yield
    finally:
        operations.checked_payload = _VERIFIED  # type: ignore[assignment]


def _timed_both(work: Callable[[], object]) -> dict[str, Callable[[], object]]:
    def verified() -> None:
        with _hashing(True):
            work()

    def unverified() -> None:
        with _hashing(False):
            work()

    return {"verified": verified, "unverified": unverified}


def _get_rounds(
    store: ObservationStore, name: str, outcome: Outcome, gets: int, rounds: int
) -> dict[str, Any]:
    session = store.session(name)
    session.create_cell("c")
    session.begin("c", 0)
    session.record("c", 0, outcome)

    def get() -> None:
        for _ in range(gets):
            got = session.get("c", 0)
            assert got is not None and got.outcome is not None

    data = encode_payload(outcome)
    variants = _timed_both(get)
    variants["sha256 alone"] = lambda: [hashlib.sha256(data).digest() for _ in range(gets)]
    times = alternate(variants, rounds)
    verified, unverified = median(times["verified"]) / gets, median(times["unverified"]) / gets
    store.end_session(name)
    return {
        "payload_bytes": len(data),
        "verified_s": round(verified, 7),
        "unverified_s": round(unverified, 7),
        "ratio": ratio(verified, unverified),
        "sha256_s": round(median(times["sha256 alone"]) / gets, 7),
    }


def measure(folder: Path, rounds: int, cells: int, sizes: list[int]) -> dict[str, Any]:
    """Return, per workload, the median seconds verified and unverified and their ratio."""
    results: dict[str, Any] = {}
    payloads = HostPayloads.build()
    with ObservationStore.open(folder / "loop.db") as store:
        batches = iter(range(10**9))

        def loop() -> None:
            batch = next(batches)
            store_cells(store, f"loop-{batch}", [f"c{index}" for index in range(cells)], payloads)

        times = alternate(_timed_both(loop), rounds)
        per_cell = {name: median(values) / cells for name, values in times.items()}
        results["host loop (per cell)"] = {
            "verified_s": round(per_cell["verified"], 7),
            "unverified_s": round(per_cell["unverified"], 7),
            "ratio": ratio(per_cell["verified"], per_cell["unverified"]),
        }
    limit = max(sizes) * 2
    with ObservationStore.open(folder / "get.db", durability="normal", max_payload_bytes=limit) as store:
        results["get, 2 KB text"] = _get_rounds(store, "text", text_outcome(2048), 200, rounds)
        for size in sizes:
            results[f"get, {size:,} B image"] = _get_rounds(
                store, f"image-{size}", image_outcome(size), 1, rounds
            )
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--sizes", default=f"{1 << 20},{(64 << 20) - 4096}")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(measure(Path(folder), args.rounds, args.cells, sizes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
