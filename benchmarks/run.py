"""Run every benchmark, print one table of ratios and write it as JSON.

Usage: ``.venv/bin/python -m benchmarks.run [--quick] [--max-rows N] [...]``
(or ``python benchmarks/run.py``). Every figure is a ratio against a baseline
measured in the same run, the variants alternating round after round, the
median of the rounds kept: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy

from benchmarks import cli_startup, contention, host_loop, leases, payloads, replay, session_rows
from benchmarks.common import Row, median, ratio, table_row

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
SECTIONS = ("host", "sessions", "replay", "payloads", "open", "contention", "postgres", "leases", "cli")
POSTGRES_URL_VARIABLE = "CODEMODE_STORE_TEST_POSTGRES_URL"


def _sizes(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the options; ``--quick`` shrinks every default."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of a few seconds")
    parser.add_argument("--cells", type=int, help="host loop: cells per round (default 200; quick 40)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of every alternating measurement (default 15; quick 3)"
    )
    parser.add_argument(
        "--replay-sizes", type=_sizes, help="observations per replay file (default 1e3,1e5,1e6)"
    )
    parser.add_argument("--max-rows", type=int, default=None, help="leave out replay files larger than this")
    parser.add_argument(
        "--lookups", type=int, help="replay lookups per file per round (default 400; quick 40)"
    )
    parser.add_argument(
        "--payload-sizes", type=_sizes, help="payload bytes (default 1024,1048576,33554432; quick 1024,65536)"
    )
    parser.add_argument("--processes", type=int, default=4, help="contention: worker processes (default 4)")
    parser.add_argument(
        "--contention-cells", type=int, help="contention: cells per worker (default 300; quick 20)"
    )
    parser.add_argument(
        "--session-cells",
        type=int,
        help="sessions: cells per run, shared by its sessions (default 480; quick 96)",
    )
    parser.add_argument(
        "--fsync-delay-ms",
        type=float,
        default=2.0,
        help="sessions: how long each sync takes more on the slow FUSE disk (default 2 ms)",
    )
    parser.add_argument("--no-peer", action="store_true", help="leave persist-queue out even if installed")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_VARIABLE) or None,
        help=f"PostgreSQL server for the postgres section (default ${POSTGRES_URL_VARIABLE}; "
        "a scratch database is created and dropped there); without one the section is skipped",
    )
    parser.add_argument("--pg-cells", type=int, help="postgres: cells per round (default 40; quick 10)")
    parser.add_argument(
        "--lease-intervals", type=int, help="leases: renewal intervals watched (default 30; quick 9)"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "cells": 40 if quick else 200,
        "rounds": 3 if quick else 15,
        "replay_sizes": [1_000, 10_000] if quick else [1_000, 100_000, 1_000_000],
        "lookups": 40 if quick else 400,
        "payload_sizes": [1024, 65536] if quick else [1024, 1 << 20, 32 << 20],
        "contention_cells": 20 if quick else 300,
        "pg_cells": 10 if quick else 40,
        "session_cells": 96 if quick else 480,
        "lease_intervals": 9 if quick else 30,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_rows is not None:
        args.replay_sizes = [size for size in args.replay_sizes if size <= args.max_rows] or [
            min(args.replay_sizes)
        ]
    return args


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _human_rows(count: int) -> str:
    return f"1e{len(str(count)) - 1}" if str(count).strip("0") == "1" else str(count)


#: Host loop targets: store time / raw time at each durability (issue 15, target 1).
HOST_TARGETS = {"normal": (1.5, "store time <= 1.5x raw (aim 1.3x)"), "full": (1.2, "store time <= 1.2x raw")}


def bench_host(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """Host loop at both durabilities: store against raw sqlite3 and persist-queue, same ``synchronous``."""
    with_peer = not args.no_peer and host_loop.peer_available()
    times = host_loop.run_host_loop(args.cells, args.rounds, with_peer)
    details["host"] = {name: [round(t, 6) for t in values] for name, values in times.items()}
    per_second = {name: args.cells / median(values) for name, values in times.items()}
    rows = []
    for durability, synchronous in host_loop.DURABILITIES.items():
        workload = f"host loop (6 txns/cell), durability={durability}"
        store = per_second[f"store_{durability}"]
        # Pair each store round with the raw round next to it: load drifts between rounds.
        paired = median(
            [s / r for s, r in zip(times[f"store_{durability}"], times[f"raw_{durability}"], strict=True)]
        )
        anonymous = median(
            [s / r for s, r in zip(times[f"anonymous_{durability}"], times[f"raw_{durability}"], strict=True)]
        )
        limit, target = HOST_TARGETS[durability]
        rows.append(
            table_row(
                f"{workload}, with a host id",
                "cells/s",
                round(store),
                f"raw sqlite3, synchronous={synchronous}",
                round(per_second[f"raw_{durability}"]),
                round(paired, 2),
                target,
                paired <= limit,
            )
        )
        rows.append(
            table_row(
                f"{workload}, without host id",
                "cells/s",
                round(per_second[f"anonymous_{durability}"]),
                f"raw sqlite3, synchronous={synchronous}",
                round(per_second[f"raw_{durability}"]),
                round(anonymous, 2),
                target,
                anonymous <= limit,
            )
        )
        peer = f"peer_{durability}"
        if peer in per_second:
            speedup = store / per_second[peer]
            rows.append(
                table_row(
                    workload,
                    "cells/s",
                    round(store),
                    f"persist-queue SQLiteAckQueue, synchronous={synchronous}",
                    round(per_second[peer]),
                    round(speedup, 2),
                    "store cells/s >= 1.0x peer",
                    speedup >= 1.0,
                )
            )
        else:
            rows.append(
                table_row(
                    workload,
                    "cells/s",
                    round(store),
                    "persist-queue not installed (pip install -e '.[bench]')",
                    None,
                    None,
                    ">= 1.0x peer",
                    None,
                )
            )
    return rows


def bench_replay(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[Row]:
    """Replay latency at every size against the smallest file."""
    result = replay.measure(folder, args.replay_sizes, args.lookups, args.rounds)
    details["replay"] = result
    latency = result["latency_us"]
    smallest = min(args.replay_sizes)
    rows = []
    for op, label in (("get", "get"), ("begin", "begin (replay)")):
        base = latency[op][smallest]
        for size in args.replay_sizes:
            now = latency[op][size]
            figure = ratio(now["p99"], base["p99"])
            rows.append(
                table_row(
                    f"{label}, {_human_rows(size)} rows",
                    "p50 / p99 µs",
                    f"{now['p50']} / {now['p99']}",
                    f"same op, {_human_rows(smallest)} rows",
                    f"{base['p50']} / {base['p99']}",
                    figure,
                    "p99 <= 1.5x smallest",
                    figure <= 1.5 if size != smallest else None,
                )
            )
    largest = max(args.replay_sizes)
    store_p50, raw_p50 = latency["get"][largest]["p50"], latency["raw"][largest]["p50"]
    rows.append(
        table_row(
            f"get, {_human_rows(largest)} rows",
            "p50 µs",
            store_p50,
            "raw sqlite3 select + json.loads",
            raw_p50,
            ratio(store_p50, raw_p50),
            "(context)",
            None,
        )
    )
    return rows


def bench_payloads(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[Row]:
    """Large payloads: record + get against raw insert + select; peak memory."""
    result = payloads.measure(folder, args.payload_sizes, args.rounds)
    details["payloads"] = result
    rows = []
    for size, figures in result.items():
        label = _human_bytes(size)
        rows.append(
            table_row(
                f"record + get, {label} image (durability=normal)",
                "ms",
                _fmt(figures["store_s"] * 1000),
                "raw sqlite3 insert + select of the same bytes",
                _fmt(figures["raw_s"] * 1000),
                figures["ratio"],
                "<= 2x raw",
                figures["ratio"] <= 2,
            )
        )
        rows.append(
            table_row(
                f"record + get, {label} image (durability=normal)",
                "ms",
                _fmt(figures["store_s"] * 1000),
                "raw sqlite3 running the store's own statements on its schema",
                _fmt(figures["same_schema_s"] * 1000),
                figures["same_schema_ratio"],
                "(context)",
                None,
            )
        )
        rss = figures["peak_rss_x"]
        peak = figures["peak_tracemalloc_x"]
        rows.append(
            table_row(
                f"record + get, {label} image (durability=normal)",
                "peak memory / payload",
                f"{peak} (tracemalloc)",
                "peak RSS growth / payload",
                rss,
                peak,
                "<= 2x payload",
                peak <= 2.0 if size >= 1 << 20 else None,
            )
        )
    return rows


def _human_bytes(size: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def bench_open(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """Open of an up-to-date file against a bare engine (benchmarks/open_time.py)."""
    from benchmarks import open_time

    times = open_time.measure(max(args.rounds, 5) * 2)
    medians = {name: median(values) for name, values in times.items()}
    details["open"] = {name: round(value * 1000, 4) for name, value in medians.items()}
    rows = []
    for base, label in (
        ("bare", "create_engine + connect + SELECT 1"),
        ("bare_read", "bare engine reading the file"),
    ):
        figure = ratio(medians["store"], medians[base])
        rows.append(
            table_row(
                "open (at head)",
                "ms",
                _fmt(medians["store"] * 1000),
                label,
                _fmt(medians[base] * 1000),
                figure,
                "<= 2x bare engine",
                figure <= 2,
            )
        )
    return rows


def bench_contention(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[Row]:
    """Several processes on one file: store against raw sqlite3, errors must be 0."""
    runs = {
        kind: contention.run_contention(folder, kind, args.processes, args.contention_cells)
        for kind in ("raw", "store")
    }
    details["contention"] = runs
    store, raw = runs["store"], runs["raw"]
    return [
        table_row(
            f"contention, {args.processes} processes",
            "cells/s (errors)",
            f"{store['cells_per_s']} ({store['errors']})",
            "raw sqlite3, same processes, synchronous=FULL",
            f"{raw['cells_per_s']} ({raw['errors']})",
            ratio(raw["cells_per_s"], store["cells_per_s"]),
            "0 errors; ratio = store time / raw",
            store["errors"] == 0,
        )
    ]


def bench_postgres(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """PostgreSQL host loop through a counting proxy: round trips per cell, cells/s against naive psycopg."""
    workload = "PostgreSQL host loop (6 ops/cell)"
    if not args.postgres_url:
        return [
            table_row(
                workload,
                "round trips / cell",
                None,
                f"skipped: no server (--postgres-url or ${POSTGRES_URL_VARIABLE})",
                None,
                None,
                "<= 6 round trips / cell",
                None,
            )
        ]
    from benchmarks import postgres

    result = postgres.measure(args.postgres_url, args.pg_cells, args.rounds)
    details["postgres"] = result
    trips = result["round_trips_per_cell"]
    per_second = result["cells_per_s"]
    seconds = result["seconds"]

    def paired(delay: str) -> float:
        return median([s / n for s, n in zip(seconds[delay]["store"], seconds[delay]["naive"], strict=True)])

    slow, fast = paired("1 ms"), paired("0 ms")
    return [
        table_row(
            workload,
            "round trips / cell",
            round(trips["store"], 2),
            "naive psycopg host (BEGIN, statements, COMMIT per operation)",
            round(trips["naive"], 2),
            ratio(trips["store"], trips["naive"]),
            "<= 6 round trips / cell (with a host id)",
            trips["store"] <= 6,
        ),
        table_row(
            workload,
            "round trips / cell",
            round(trips["anonymous"], 2),
            "the same store without host id (ownership costs no round trip)",
            round(trips["anonymous"], 2),
            ratio(trips["store"], trips["anonymous"]),
            "with a host id = without",
            trips["store"] == trips["anonymous"],
        ),
        table_row(
            f"{workload}, 1 ms added latency",
            "cells/s",
            per_second["1 ms"]["store"],
            "naive psycopg host, same proxy",
            per_second["1 ms"]["naive"],
            round(1 / slow, 2),
            "store cells/s >= 3x naive",
            1 / slow >= 3,
        ),
        table_row(
            f"{workload}, 0 ms added latency",
            "cells/s",
            per_second["0 ms"]["store"],
            "naive psycopg host, same proxy",
            per_second["0 ms"]["naive"],
            round(fast, 2),
            "store time <= 1.3x naive",
            fast <= 1.3,
        ),
    ]


#: Lease renewals are measured with a lease this long (a renewal every 0.1 s).
LEASE_SECONDS = 0.3


def bench_leases(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[Row]:
    """Writes an idle host's lease costs, per renewal interval (lease_seconds / 3), per backend."""
    result = leases.measure(folder, args.postgres_url, LEASE_SECONDS, args.lease_intervals)
    details["leases"] = result
    return [
        table_row(
            f"lease renewal, {backend}, lease {figures['lease_seconds']} s, idle host",
            "writes / (lease_seconds / 3)",
            figures["writes_per_interval"],
            f"{figures['renewal_intervals']} renewal intervals ({figures['writes']} writes)",
            None,
            None,
            "<= 1 write / (lease_seconds / 3)",
            figures["writes_per_interval"] <= 1,
        )
        for backend, figures in result.items()
    ]


def table(rows: list[Row]) -> str:
    """Return the rows as a Markdown table."""
    head = ["workload", "measure", "store", "baseline", "baseline value", "ratio", "target", "meets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        meets = {True: "yes", False: "NO", None: ""}[row["meets"]]
        cells = [
            row["workload"],
            row["measure"],
            row["store"],
            row["baseline"],
            row["baseline_value"],
            "" if row["ratio"] is None else f"{row['ratio']}x",
            row["target"],
            meets,
        ]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections and return the report (rows, details, errors)."""
    sections = args.only or list(SECTIONS)
    details: dict[str, Any] = {}
    rows: list[Row] = []
    errors: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cms-bench-") as tmp:
        folder = Path(tmp)
        steps: dict[str, Callable[[], list[Row]]] = {
            "host": lambda: bench_host(args, details),
            "sessions": lambda: session_rows.bench(args, details, folder),
            "replay": lambda: bench_replay(args, details, folder),
            "payloads": lambda: bench_payloads(args, details, folder),
            "open": lambda: bench_open(args, details),
            "contention": lambda: bench_contention(args, details, folder),
            "postgres": lambda: bench_postgres(args, details),
            "leases": lambda: bench_leases(args, details, folder),
            "cli": lambda: cli_startup.bench(args, details, folder),
        }
        for name in sections:
            print(f"... {name}", file=sys.stderr, flush=True)
            try:
                rows.extend(steps[name]())
            except Exception as exc:  # report it, run the other sections
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
    contention_errors = sum(run["errors"] for run in details.get("contention", {}).values())
    contention_errors += session_rows.errors(details)
    return {
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": sqlalchemy.__version__,
            "platform": platform.platform(),
        },
        "options": {key: _shown_option(key, value) for key, value in vars(args).items()},
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
        "details": details,
        "errors": len(errors) + contention_errors,
        "error_messages": errors,
    }


def _shown_option(key: str, value: Any) -> Any:
    """Return an option as the JSON shows it: paths as text, the server URL without its password."""
    if key == "postgres_url" and value:
        return sqlalchemy.make_url(value).render_as_string(hide_password=True)
    return str(value) if isinstance(value, Path) else value


def main(argv: list[str] | None = None) -> int:
    """Run, print the table and the JSON path; exit 1 if anything failed."""
    args = parse_args(argv)
    report = run(args)
    print(table(report["rows"]))
    print(
        f"\n{report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
        f"SQLite {report['machine']['sqlite']}, SQLAlchemy {report['machine']['sqlalchemy']}; "
        f"{report['seconds']} s; errors: {report['errors']}"
    )
    for message in report["error_messages"]:
        print(f"error: {message}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"JSON: {args.json}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
