"""The benchmark entry point runs end to end at tiny sizes: table, JSON, no errors (no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run

TINY = [
    "--cells", "3",
    "--rounds", "2",
    "--replay-sizes", "100,300",
    "--lookups", "4",
    "--payload-sizes", "1024,4096",
    "--processes", "2",
    "--contention-cells", "3",
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
    expected_workloads = ("host loop", "get, 1e2 rows", "begin (replay), 300 rows", "record + get, 4 KB")
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
    assert set(report["details"]["host"]) >= {"store", "raw"}
    assert all(len(times) == 2 for times in report["details"]["host"].values())


def test_max_rows_caps_the_replay_files() -> None:
    args = run.parse_args(["--max-rows", "100000"])
    assert args.replay_sizes == [1_000, 100_000]
    assert run.parse_args(["--quick"]).replay_sizes == [1_000, 10_000]
