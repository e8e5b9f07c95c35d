"""The rows of the ``sessions`` section of ``benchmarks.run`` (issue 20): many sessions of one process.

Group commit at ``full`` against one session, against ``normal``, against each
write committing alone, against persist-queue with as many producers; asyncio
tasks; on a disk whose syncs take ``--fsync-delay-ms`` more (the lossy FUSE
filesystem); and PostgreSQL at 1, 4 and 16 sessions. Every figure is a ratio
of two runs of the same round; the latency rows carry the batches (operations
per commit, commits/s, fsyncs/s). The runs themselves are in ``sessions.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import sessions
from .common import Row, ratio, table_row
from .host_loop import peer_available

__all__ = ["bench", "errors"]


def errors(details: dict[str, Any]) -> int:
    """Count the errors of the store's runs with group commit (each write alone may fail: the finding)."""
    return sum(
        run["errors"]
        for place in details.get("sessions", {}).values()
        for name, run in place.items()
        if "no group commit" not in name and "peer" not in name
    )


def bench(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[Row]:
    """Run as a section of ``benchmarks.run``: the rows, and the runs' figures in ``details["sessions"]``."""
    rounds = max(1, min(args.rounds, 5))
    with_peer = not args.no_peer and peer_available()
    local = sessions.measure_local(folder, args.session_cells, rounds, with_peer)
    found: dict[str, Any] = {"local": local}
    details["sessions"] = found
    rows = []

    def speed(runs: dict[str, Any], name: str) -> float:
        return float(runs[name]["cells_per_s"])

    def compare(
        workload: str,
        runs: dict[str, Any],
        name: str,
        base: str,
        label: str,
        target: str,
        limit: float | None,
    ) -> Row:
        figure = ratio(speed(runs, name), speed(runs, base))
        errors = runs[name]["errors"]
        return table_row(
            workload,
            "cells/s (errors)",
            f"{round(speed(runs, name))} ({errors})",
            label,
            f"{round(speed(runs, base))} ({runs[base]['errors']})",
            figure,
            target,
            None if limit is None else figure >= limit and errors == 0,
        )

    rows.append(compare("16 sessions, full", local, "16 full", "1 full", "1 session, full", ">= 2x", 2.0))
    workload = "16 sessions, full"
    rows.append(compare(workload, local, "16 full", "16 normal", "16 sessions, normal", "aim >= 0.77x", None))
    rows.append(
        compare(
            "16 sessions, full",
            local,
            "16 full",
            "16 full, no group commit",
            "16 sessions, full, each write its own commit",
            "(context)",
            None,
        )
    )
    if "peer 16 producers" in local:
        rows.append(
            compare(
                "16 sessions, full",
                local,
                "16 full",
                "peer 16 producers",
                "16 producers on persist-queue SQLiteAckQueue (FULL)",
                ">= 3x",
                3.0,
            )
        )
    for tasks in (16, 64):
        rows.append(
            compare(
                f"asyncio, {tasks} tasks, full",
                local,
                f"asyncio {tasks} full",
                "asyncio 1 full",
                "asyncio, 1 task, full",
                "> 1x",
                1.0,
            )
        )
    for count in ("1", "16", "64"):
        run = local[f"{count} full"]
        rows.append(
            table_row(
                f"{count} session{'s' if count != '1' else ''}, full: latency per call",
                "p50 / p99 ms",
                f"{run['p50_ms']} / {run['p99_ms']}",
                "ops per commit, commits/s",
                f"{run['ops_per_commit']}, {run['commits_per_s']}",
                None,
                "(context)",
                None,
            )
        )
    delay = args.fsync_delay_ms / 1000
    try:
        slow = sessions.measure_slow_disk(delay, args.session_cells, max(1, min(rounds, 3)))
    except RuntimeError as exc:  # no FUSE here
        rows.append(
            table_row(
                f"{args.fsync_delay_ms:g} ms-fsync disk",
                "cells/s",
                None,
                f"skipped: {exc}",
                None,
                None,
                "",
                None,
            )
        )
    else:
        found["slow_disk"] = slow
        disk = f"{args.fsync_delay_ms:g} ms-fsync disk"
        for count, limit in (("16", 8.0), ("64", 20.0), ("256", None)):
            target = f">= {limit:g}x, 0 errors" if limit else "0 errors"
            workload = f"{count} sessions, full, {disk}"
            row = compare(workload, slow, f"{count} full", "1 full", "1 session", target, limit)
            if limit is None:
                row["meets"] = slow[f"{count} full"]["errors"] == 0
            rows.append(row)
        rows.append(
            compare(
                f"16 sessions, full, {disk}",
                slow,
                "16 full, no group commit",
                "1 full",
                "1 session (each write its own commit: the old way)",
                "(context)",
                None,
            )
        )
        for count in ("1", "16", "64", "256"):
            run = slow[f"{count} full"]
            rows.append(
                table_row(
                    f"{count} session{'s' if count != '1' else ''}, full, {disk}: latency, batches",
                    "p50 / p99 ms",
                    f"{run['p50_ms']} / {run['p99_ms']}",
                    "ops per commit, commits/s, fsyncs/s",
                    f"{run['ops_per_commit']}, {run['commits_per_s']}, {run.get('fsyncs_per_s')}",
                    None,
                    "(context)",
                    None,
                )
            )
    if args.postgres_url:
        pg = sessions.measure_postgres(args.postgres_url, args.session_cells // 2, rounds)
        found["postgres"] = pg
        for count in ("4", "16"):
            rows.append(
                compare(
                    f"{count} sessions on PostgreSQL (no group commit)",
                    pg,
                    f"{count} sessions",
                    "1 sessions",
                    "1 session",
                    "> 1x",
                    1.0,
                )
            )
    return rows
