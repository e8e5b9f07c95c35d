"""The command line as a person feels it: whole processes, against bare baselines.

Run ``python -m benchmarks.cli_startup [--rounds N] [--rows N]``, or as the
``cli`` section of ``python -m benchmarks.run``. Every figure is a ratio of
medians of whole-process wall times, the variants alternating round after round:

- ``codemode-store --version`` and ``--help`` against ``python -c "import click"``;
- ``stats`` and ``cells`` on the demo's database against a bare
  ``python -c "import sqlalchemy; create_engine; connect; SELECT count(*)"``;
- ``cells --limit 50`` on a store of ``--rows`` observations (10^6 by default;
  in ``benchmarks.run``, the largest replay size)
  against the same command on 10^3 observations (item 15 of issue 11: the
  first page of a listing does not grow with the store), plus the same first
  page read in process through ``inspection.iter_cells``.

The command is the installed ``codemode-store`` script (this checkout's code:
``PYTHONPATH`` puts it first), else an import of this checkout's ``cli``.
Bytecode is written on a
first, untimed run of every variant (``PYTHONDONTWRITEBYTECODE`` is dropped for
the children): an installed package has its ``.pyc`` files too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import alternate, median

ROOT = Path(__file__).resolve().parent.parent
PAGE = 50
SMALL_ROWS = 1_000


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CODEMODE_STORE_URL")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["NO_COLOR"] = "1"
    return env


def command() -> list[str]:
    """Return how to run this checkout's ``codemode-store``, as a person would.

    The installed script (an editable install serves this checkout, and
    ``PYTHONPATH`` puts the checkout first in any case); without one, an
    import of ``cli``. Never ``python cli.py``: a script run as ``__main__`` is
    compiled anew every time, which no installed command pays.
    """
    script = Path(sys.executable).with_name("codemode-store")
    if script.exists():
        done = subprocess.run(
            [str(script), "--version"], capture_output=True, env=_environment(), timeout=60, check=False
        )
        if done.returncode == 0:
            return [str(script)]
    return [sys.executable, "-c", "import sys; from cli import main; sys.argv[0] = 'codemode-store'; main()"]


def _bare_count(path: Path) -> list[str]:
    code = (
        "import sqlalchemy as sa\n"
        f"engine = sa.create_engine({f'sqlite:///{path}'!r})\n"
        "with engine.connect() as conn:\n"
        "    print(conn.execute(sa.text('SELECT count(*) FROM observations')).scalar())\n"
    )
    return [sys.executable, "-c", code]


def _runner(argv: list[str], folder: Path) -> Any:
    env = _environment()

    def run() -> None:
        done = subprocess.run(argv, capture_output=True, env=env, cwd=folder, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-300:]}")

    return run


def _paired(times: dict[str, list[float]], name: str, base: str) -> float:
    """Return the median over rounds of ``name``'s time over ``base``'s in the same round."""
    return round(median([a / b for a, b in zip(times[name], times[base], strict=True)]), 2)


def demo_database(folder: Path) -> Path:
    """Play the demo into ``folder`` and return its database."""
    from codemode_store.cli_support.demo import run_demo

    path = folder / "demo.db"
    run_demo(path, lambda _line: None)
    return path


def listing_database(folder: Path, rows: int, *, one_session: bool = False) -> Path:
    """Return a store of ``rows`` observations (the replay benchmark's layout: 100 cells a
    session, ten generations a cell), or with every cell in one session."""
    from benchmarks import replay

    path = folder / f"listing-{rows}{'-one-session' if one_session else ''}.db"
    if path.exists():
        return path
    per_session = replay.CELLS_PER_SESSION
    if one_session:
        replay.CELLS_PER_SESSION = rows  # more cells than the store will hold: all in session-0
    try:
        replay.build(path, rows)
    finally:
        replay.CELLS_PER_SESSION = per_session
    return path


def first_page_in_process(path: Path, rounds: int) -> list[float]:
    """Return the seconds to read the first page of cells in process, one per round."""
    from codemode_store import ObservationStore
    from codemode_store.cli_support import inspection

    times = []
    with ObservationStore.open(path) as store:
        for _ in range(rounds):
            reads = []
            for _ in range(5):  # the best of five: a page takes about a millisecond
                start = time.perf_counter()
                page = list(inspection.iter_cells(store, limit=PAGE))
                reads.append(time.perf_counter() - start)
                assert page
            times.append(min(reads))
    return times


def measure(folder: Path, rounds: int, rows: int) -> dict[str, Any]:
    """Time every variant in alternating rounds; return medians (ms) and paired ratios."""
    cli = command()
    demo = demo_database(folder)
    small, large = listing_database(folder, SMALL_ROWS), listing_database(folder, rows)
    one = listing_database(folder, rows, one_session=True)
    variants = {
        "click": [sys.executable, "-c", "import click"],
        "version": [*cli, "--version"],
        "help": [*cli, "--help"],
        "bare_count": _bare_count(demo),
        "stats": [*cli, "--db", str(demo), "stats"],
        "cells": [*cli, "--db", str(demo), "cells"],
        "page_small": [*cli, "--db", str(small), "cells", "--limit", str(PAGE)],
        "page_large": [*cli, "--db", str(large), "cells", "--limit", str(PAGE)],
        "page_one_session": [*cli, "--db", str(one), "cells", "--limit", str(PAGE)],
    }
    runners = {name: _runner(argv, folder) for name, argv in variants.items()}
    for run in runners.values():  # untimed: writes the bytecode, warms the file cache
        run()
    times = alternate(runners, rounds)
    in_process = {
        "small": first_page_in_process(small, rounds),
        "large": first_page_in_process(large, rounds),
        "one_session": first_page_in_process(one, rounds),
    }
    return {
        "command": " ".join(cli),
        "rows": rows,
        "median_ms": {name: round(median(values) * 1000, 1) for name, values in times.items()},
        "ratios": {
            "version / import click": _paired(times, "version", "click"),
            "help / import click": _paired(times, "help", "click"),
            "stats / bare count": _paired(times, "stats", "bare_count"),
            "cells / bare count": _paired(times, "cells", "bare_count"),
            "cells --limit 50, large / small": _paired(times, "page_large", "page_small"),
            "cells --limit 50, one session / small": _paired(times, "page_one_session", "page_small"),
            "first page in process, large / small": round(
                median(in_process["large"]) / median(in_process["small"]), 2
            ),
            "first page in process, one session / small": round(
                median(in_process["one_session"]) / median(in_process["small"]), 2
            ),
        },
        "in_process_ms": {name: round(median(values) * 1000, 2) for name, values in in_process.items()},
    }


def rows_for_run(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of ``benchmarks.run``'s table for a ``measure`` result."""
    ms, ratios, rows = result["median_ms"], result["ratios"], result["rows"]
    human = f"1e{len(str(rows)) - 1}" if str(rows).strip("0") == "1" else str(rows)

    def row(workload: str, store: float, baseline: str, value: float, key: str) -> dict[str, Any]:
        figure = ratios[key]
        return {
            "workload": workload,
            "measure": "ms (whole process)" if "in process" not in key else "ms",
            "store": store,
            "baseline": baseline,
            "baseline_value": value,
            "ratio": figure,
            "target": "<= 1.5x",
            "meets": figure <= 1.5,
        }

    return [
        row(
            "CLI --version", ms["version"], 'python -c "import click"', ms["click"], "version / import click"
        ),
        row("CLI --help", ms["help"], 'python -c "import click"', ms["click"], "help / import click"),
        row(
            "CLI stats (demo db)",
            ms["stats"],
            "bare sqlalchemy count(*)",
            ms["bare_count"],
            "stats / bare count",
        ),
        row(
            "CLI cells (demo db)",
            ms["cells"],
            "bare sqlalchemy count(*)",
            ms["bare_count"],
            "cells / bare count",
        ),
        row(
            f"CLI cells --limit {PAGE}, {human} obs",
            ms["page_large"],
            f"same, {SMALL_ROWS:.0e} obs".replace("+0", ""),
            ms["page_small"],
            "cells --limit 50, large / small",
        ),
        row(
            f"CLI cells --limit {PAGE}, {human} obs in one session",
            ms["page_one_session"],
            f"same, {SMALL_ROWS:.0e} obs".replace("+0", ""),
            ms["page_small"],
            "cells --limit 50, one session / small",
        ),
        row(
            f"first page of cells in process, {human} obs in one session",
            result["in_process_ms"]["one_session"],
            f"same, {SMALL_ROWS:.0e} obs".replace("+0", ""),
            result["in_process_ms"]["small"],
            "first page in process, one session / small",
        ),
        row(
            f"first page of cells in process, {human} obs",
            result["in_process_ms"]["large"],
            f"same, {SMALL_ROWS:.0e} obs".replace("+0", ""),
            result["in_process_ms"]["small"],
            "first page in process, large / small",
        ),
    ]


def bench(args: argparse.Namespace, details: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Run as a section of ``benchmarks.run``: the rows, and the figures in ``details["cli"]``."""
    # The largest store of the run: that of the replay section (10^6 by default).
    result = measure(folder, max(args.rounds, 3), max(args.replay_sizes))
    details["cli"] = result
    return rows_for_run(result)


def main(argv: list[str] | None = None) -> int:
    """Print the medians and ratios of one run."""
    import json
    import tempfile

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cli_startup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="observations of the large listing store")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cms-cli-") as tmp:
        result = measure(Path(tmp), args.rounds, args.rows)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
