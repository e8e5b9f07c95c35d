"""What OpenTelemetry costs the host loop: a store that emits against one opened with ``telemetry=False``.

Usage: ``.venv/bin/python -m benchmarks.telemetry [--cells N] [--rounds N] [--sdk]``

In one run, alternating round after round on files of their own: the raw
sqlite3 host (``raw.py``), the store with ``telemetry=False`` and the store
that emits (the default when ``opentelemetry-api`` is installed), at each
durability. Without ``--sdk`` no SDK is installed: the API's no-op providers,
what a host that never configured OpenTelemetry pays (the bar: at most 3%
over ``telemetry=False``). With ``--sdk`` the SDK's tracer provider (spans
recorded, none exported) and meter provider (an in-memory reader) are
installed first: what an instrumented host pays before its exporter.
Then ``--reads`` ``get`` calls per round on one store whose telemetry is
switched on and off between rounds: a read has no fsync, so the call's own
overhead shows there, where the host loop's rounds are mostly the disk's.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Rounds, alternate, median
from benchmarks.host_loop import DURABILITIES, HostPayloads, raw_cells, store_cells
from benchmarks.raw import RawHost
from codemode_store import ObservationStore

__all__ = ["install_sdk", "measure", "ratios"]

#: On/off must stay within this (telemetry on, no SDK, against telemetry=False).
NO_SDK_LIMIT = 1.03


def install_sdk() -> None:
    """Install the SDK's providers globally: spans recorded but not exported, metrics kept in memory."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


@contextmanager
def _variants(folder: Path, cells_per_round: int, twin: bool) -> Iterator[dict[str, Callable[[], object]]]:
    payloads = HostPayloads.build()
    counter = itertools.count()
    opened: list[Any] = []

    def batch() -> list[str]:
        start = next(counter) * cells_per_round
        return [f"cell-{n}" for n in range(start, start + cells_per_round)]

    variants: dict[str, Callable[[], object]] = {}
    try:
        for durability, synchronous in DURABILITIES.items():
            ObservationStore.open(folder / f"raw-{durability}.db").close()  # the schema, by Alembic
            raw = RawHost(str(folder / f"raw-{durability}.db"), synchronous=synchronous)
            opened.append(raw)
            variants[f"raw_{durability}"] = lambda raw=raw: raw_cells(raw, "s", batch(), payloads)
            for name, telemetry in ((f"off_{durability}", False), (f"on_{durability}", True)) + (
                ((f"twin_{durability}", False),) if twin else ()
            ):
                store = ObservationStore.open(
                    folder / f"{name}.db",
                    durability=durability,  # type: ignore[arg-type]
                    telemetry=telemetry,
                )
                opened.append(store)
                if telemetry and store._telemetry is None:
                    raise SystemExit("opentelemetry-api is not installed: pip install -e '.[otel]'")
                variants[name] = lambda store=store: store_cells(store, "s", batch(), payloads)
        yield variants
    finally:
        for thing in opened:
            thing.close()


def measure(cells_per_round: int, rounds: int, twin: bool = False) -> Rounds:
    """Return each variant's seconds per round of ``cells_per_round`` cells.

    ``twin`` adds a second ``telemetry=False`` store per durability: its ratio
    to the first is the noise of the machine (1.0 on a quiet one).
    """
    with (
        tempfile.TemporaryDirectory(prefix="cms-otel-") as tmp,
        _variants(Path(tmp), cells_per_round, twin) as runs,
    ):
        for run in runs.values():  # warm up: connections, statement caches, the first spans
            run()
        return alternate(runs, rounds)


def measure_reads(calls: int, rounds: int) -> Rounds:
    """Return the seconds of ``calls`` ``get`` calls per round, telemetry on and off.

    A read takes no fsync and no lock: the call's own overhead shows, where a
    host loop round at ``full`` is mostly the disk's time. One store, one
    file: its telemetry is switched on and off between rounds (the object
    ``open`` made, and ``None``, what ``telemetry=False`` makes), so nothing
    but the hook differs between the two.
    """
    with (
        tempfile.TemporaryDirectory(prefix="cms-otel-") as tmp,
        ObservationStore.open(Path(tmp) / "get.db", durability="normal") as store,
    ):
        telemetry = store._telemetry
        if telemetry is None:
            raise SystemExit("opentelemetry-api is not installed: pip install -e '.[otel]'")
        session = store.session("s")
        session.create_cell("c")
        session.begin("c", 0)
        session.record("c", 0, HostPayloads.build().yielded)

        def reads(on: bool) -> None:
            store._telemetry = telemetry if on else None
            for _ in range(calls):
                session.get("c", 0)

        runs: dict[str, Callable[[], object]] = {
            "get_off": lambda: reads(False),
            "get_on": lambda: reads(True),
        }
        for run in runs.values():
            run()
        return alternate(runs, rounds)


def _paired(times: Rounds, over: str, under: str) -> float:
    """Median of the round-by-round ratios: load drifts between rounds, not within one."""
    return median([a / b for a, b in zip(times[over], times[under], strict=True)])


def ratios(times: Rounds) -> dict[str, dict[str, float]]:
    """Return, per durability, on/off, off/raw and on/raw (each the median of paired rounds)."""
    figures: dict[str, dict[str, float]] = {}
    for durability in DURABILITIES:
        pairs = {"on/off": ("on", "off"), "off/raw": ("off", "raw"), "on/raw": ("on", "raw")}
        if f"twin_{durability}" in times:
            pairs["twin/off"] = ("twin", "off")
        figures[durability] = {
            label: round(_paired(times, f"{over}_{durability}", f"{under}_{durability}"), 3)
            for label, (over, under) in pairs.items()
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure and print the ratios."""
    description = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry", description=description)
    parser.add_argument("--cells", type=int, default=100, help="cells per round (default 100)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    parser.add_argument("--reads", type=int, default=500, help="get calls per round (default 500)")
    parser.add_argument("--sdk", action="store_true", help="install the SDK's providers first")
    parser.add_argument(
        "--twin", action="store_true", help="add a second telemetry=False store: the noise (twin/off)"
    )
    args = parser.parse_args(argv)
    if args.sdk:
        install_sdk()
    times = measure(args.cells, args.rounds, args.twin)
    reads = measure_reads(args.reads, args.rounds * 2)
    providers = "SDK (spans recorded, not exported; metrics in memory)" if args.sdk else "API only, no SDK"
    print(f"host loop, {args.cells} cells x {args.rounds} rounds; providers: {providers}")
    table = ratios(times)
    labels = list(next(iter(table.values())))
    print(f"| durability | {' | '.join(labels)} | cells/s off | cells/s on |")
    print("|---" * (len(labels) + 3) + "|")
    for durability, figures in table.items():
        off = args.cells / median(times[f"off_{durability}"])
        on = args.cells / median(times[f"on_{durability}"])
        shown = " | ".join(str(figures[label]) for label in labels)
        print(f"| {durability} | {shown} | {off:.0f} | {on:.0f} |")
    per_call = {name: median(values) / args.reads * 1e6 for name, values in reads.items()}
    fastest = {name: min(values) / args.reads * 1e6 for name, values in reads.items()}
    print(
        f"get ({args.reads} calls x {args.rounds * 2} rounds, durability=normal): on/off"
        f" {_paired(reads, 'get_on', 'get_off'):.3f} (median of paired rounds),"
        f" {fastest['get_on'] / fastest['get_off']:.3f} (fastest rounds);"
        f" µs a call, median {per_call['get_on']:.2f} on, {per_call['get_off']:.2f} off;"
        f" fastest {fastest['get_on']:.2f} on, {fastest['get_off']:.2f} off"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
