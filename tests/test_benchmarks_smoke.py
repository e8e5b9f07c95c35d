"""The benchmark entry point runs end to end at tiny sizes: table, JSON, no errors (no timings asserted)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
from support.backends import POSTGRES_URL_VARIABLE

from benchmarks import run

TINY = [
    "--cells", "3",
    "--rounds", "2",
    "--replay-sizes", "100,300",
    "--lookups", "4",
    "--payload-sizes", "1024,4096",
    "--processes", "2",
    "--contention-cells", "3",
    "--pg-cells", "2",
    "--lease-intervals", "6",
    "--session-cells", "4",
]  # fmt: skip


@pytest.mark.slow
def test_a_tiny_run_prints_the_table_and_writes_json_with_no_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "latest.json"
    assert run.main([*TINY, "--json", str(target)]) == 0
    printed = capsys.readouterr().out

    report = json.loads(target.read_text())
    assert report["errors"] == 0 and report["error_messages"] == []
    assert f"JSON: {target}" in printed
    assert printed.splitlines()[0].startswith("| workload | measure | store | baseline")

    rows = report["rows"]
    workloads = " ".join(row["workload"] for row in rows)
    expected_workloads = (
        "host loop (6 txns/cell), durability=normal",
        "host loop (6 txns/cell), durability=full",
        "get, 1e2 rows",
        "begin (replay), 300 rows",
        "record + get, 4 KB",
        "PostgreSQL host loop",
        "lease renewal, sqlite",
    )
    for expected in (*expected_workloads, "open", "contention", "CLI --version", "CLI cells --limit 50"):
        assert expected in workloads
    for row in rows:
        assert set(row) == {"workload", "measure", "store", "baseline", "baseline_value", "ratio"} | {
            "target",
            "meets",
        }
        assert row["workload"] in printed
        assert row["ratio"] is None or row["ratio"] > 0

    contention = report["details"]["contention"]
    for kind in ("store", "raw"):
        assert contention[kind]["errors"] == 0
        assert contention[kind]["cells"] == 2 * 3  # every worker ran every cell
    host = report["details"]["host"]
    assert set(host) >= {"store_normal", "raw_normal", "store_full", "raw_full"}
    assert all(len(times) == 2 for times in host.values())
    sessions = [row for row in rows if "sessions" in row["workload"] and row["measure"].startswith("cells/s")]
    assert sessions and all(row["ratio"] is not None for row in sessions)  # group commit ran, 0 errors
    peers = [row for row in rows if row["baseline"].startswith("persist-queue")]
    assert len(peers) == 2  # one at each durability (the bench extra is installed by scripts/test.sh)

    postgres_rows = [row for row in rows if row["workload"].startswith("PostgreSQL")]
    if os.environ.get(POSTGRES_URL_VARIABLE):
        measures = [row["measure"] for row in postgres_rows]
        assert measures == ["round trips / cell", "round trips / cell", "cells/s", "cells/s"]
        # Deterministic: one round trip per operation, six a cell, with a host id or without;
        # the naive host's BEGIN, statements and COMMIT: 3 + 4 + 3 + 5 + 4 + 3.
        trips = report["details"]["postgres"]["round_trips_per_cell"]
        assert trips == {"store": 6.0, "anonymous": 6.0, "naive": 22.0}
        assert postgres_rows[0]["meets"] is True and postgres_rows[1]["meets"] is True
        assert "***" in report["options"]["postgres_url"]  # the password stays out of the JSON
    else:
        assert len(postgres_rows) == 1 and postgres_rows[0]["baseline"].startswith("skipped")


def test_without_a_server_the_postgres_section_is_skipped_with_a_note(tmp_path: Path) -> None:
    target = tmp_path / "latest.json"
    assert run.main(["--only", "postgres", "--postgres-url", "", "--json", str(target)]) == 0
    (row,) = json.loads(target.read_text())["rows"]
    assert row["ratio"] is None and row["meets"] is None
    assert "skipped: no server" in row["baseline"]


def test_max_rows_caps_the_replay_files() -> None:
    args = run.parse_args(["--max-rows", "100000"])
    assert args.replay_sizes == [1_000, 100_000]
    assert run.parse_args(["--quick"]).replay_sizes == [1_000, 10_000]


def test_wal_pages_finds_one_page_for_a_new_cell(tmp_path: Path) -> None:
    from benchmarks.wal_pages import store_pages

    found = store_pages(tmp_path, cells=15, warm=15)
    medians = {step: statistics.median(samples) for step, (samples, _btrees) in found.items()}
    assert list(medians) == [
        "create",
        "begin 0",
        "record yielded",
        "begin 1",
        "record completed",
        "release 1",
    ]
    # The cells table is clustered on its key (revision 0002): a new cell is one b-tree page.
    assert medians["create"] == 1
    assert found["create"][1].most_common(1)[0][0] == "cells"
    # A begin writes the cell, the row, its key and the pending-row index.
    assert medians["begin 0"] == 4
    assert all(pages >= 1 for pages in medians.values())
