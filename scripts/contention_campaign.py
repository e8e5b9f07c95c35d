"""Contention campaign: writer processes run the host loop on one SQLite file while CLI readers poll it.

Every worker process runs the host loop (create, begin 0, record a yield, begin
1, record the completion, release it) on cells of its own session, all started
at once; reader threads meanwhile run ``cli.py cells --json`` and ``stats --json``
in a loop. At the end every cell must hold exactly its two tombstones, no
caller (worker or reader) may have seen ``database is locked``, and what the
readers saw must only grow.

Usage::

    .venv/bin/python scripts/contention_campaign.py --workers 8 --cells 300 --readers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: test this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from codemode_store import ObservationStore, Outcome, TextItem  # noqa: E402
from codemode_store.wire import encode_payload  # noqa: E402

__all__ = ["WRITES_PER_CELL", "ContentionReport", "host_outcomes", "run_contention"]

SCRIPT = Path(__file__).resolve()
CLI = ROOT / "cli.py"
#: create, begin 0, record 0, begin 1, record 1, release 1: one transaction each.
WRITES_PER_CELL = 6
LOCKED = "database is locked"
#: Seconds a worker waits for the write lock (see worker_main).
WORKER_BUSY_TIMEOUT = 30.0


def host_outcomes(session_id: str, cell_id: str) -> tuple[Outcome, Outcome]:
    """Return the yield and the completion the worker records for one cell."""
    size = 100 + hashlib.sha256(f"{session_id}/{cell_id}".encode()).digest()[0] * 8
    partial = Outcome.yielded([TextItem(f"{session_id}/{cell_id} partial " + "p" * size)])
    done = Outcome.completed([TextItem(f"{session_id}/{cell_id} done")], error_text=None)
    return partial, done


def session_names(worker: str, threads: int) -> list[str]:
    """Return the sessions a worker process runs: its own name, or one per thread."""
    return [worker] if threads == 1 else [f"{worker}-t{t}" for t in range(threads)]


def worker_main(db: str, worker: str, cells: int, threads: int = 1) -> None:
    """Open the store, wait for ``go`` on stdin, run the host loop on ``cells`` cells in each session.

    With several ``threads`` each runs a session of its own on the one store:
    their writes share commits (group commit).
    """
    # The campaign looks for lost writes and deadlocks, not for latency: with an
    # fsync per commit (durability "full") on a loaded machine, eight writers can
    # keep one of them waiting past the 5 s default, which is no fault of the store.
    with ObservationStore.open(db, busy_timeout=WORKER_BUSY_TIMEOUT) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        failures: list[BaseException] = []

        def run(session_id: str) -> None:
            try:
                _host_loop(store, session_id, cells)
            except BaseException as exc:
                failures.append(exc)

        loops = [threading.Thread(target=run, args=(name,)) for name in session_names(worker, threads)]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()
        if failures:
            raise failures[0]
    print("done", flush=True)


def _host_loop(store: ObservationStore, session_id: str, cells: int) -> None:
    s = store.session(session_id)
    for i in range(cells):
        cell = f"cell-{i}"
        partial, done = host_outcomes(session_id, cell)
        s.create_cell(cell)
        if s.begin(cell, 0, {"yield_time_ms": 250}) is not None:
            raise AssertionError("a new generation replayed")
        s.record(cell, 0, partial)
        if s.begin(cell, 1, {"yield_time_ms": 250}) is not None:
            raise AssertionError("a new generation replayed")
        s.record(cell, 1, done)
        if s.release(cell, 1) is not True:
            raise AssertionError("a first release did not drop the payload")


@dataclass
class ContentionReport:
    """The figures and findings of one contention run."""

    workers: int
    cells_per_worker: int
    threads: int = 1  # sessions per worker process, a thread each
    write_operations: int = 0
    reader_runs: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLI), "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def _reader(db: Path, stop: threading.Event, runs: list[tuple[str, int, str, str]]) -> None:
    """Run ``cells --json`` and ``stats --json`` by turns until ``stop`` is set.

    ``runs`` belongs to this reader alone: one reader's runs are in snapshot
    order, but two readers' runs finish in no order relative to each other.
    """
    commands = ("cells", "stats")
    turn = 0
    while not stop.is_set():
        command = commands[turn % 2]
        done = _cli(db, command, "--json")
        runs.append((command, done.returncode, done.stdout, done.stderr))
        turn += 1


def _check_reader_runs(runs: list[tuple[str, int, str, str]]) -> list[str]:
    """Check one reader's runs: each exited 0 unlocked, and the count it saw only grew."""
    problems = []
    seen = 0
    for command, code, out, err in runs:
        if LOCKED in out + err or code != 0:
            problems.append(f"reader `{command} --json` exited {code}: {err.strip()[:200]}")
            continue
        value = json.loads(out)
        count = value["observations"] if command == "stats" else sum(c["observations"] for c in value)
        if count < seen:
            problems.append(f"reader `{command}` saw {count} observations after {seen}")
        seen = max(seen, count)
    return problems


def _check_rows(db: Path, names: list[str], cells: int) -> list[str]:
    """Check every cell of every worker holds its two tombstones with the right hashes."""
    problems = []
    with ObservationStore.open(db) as store:
        found = {(c.session_id, c.cell_id): c for c in store.cells()}
        expected = {(name, f"cell-{i}") for name in names for i in range(cells)}
        if set(found) != expected:
            problems.append(f"{len(set(found) ^ expected)} cells missing or unexpected")
        for session_id, cell_id in sorted(expected & set(found)):
            partial, done = host_outcomes(session_id, cell_id)
            want = [
                (0, "released", "yielded", hashlib.sha256(encode_payload(partial)).hexdigest()),
                (1, "released", "completed", hashlib.sha256(encode_payload(done)).hexdigest()),
            ]
            history = store.session(session_id).history(cell_id)
            got = [(o.generation, o.state, o.kind, o.payload_sha256) for o in history]
            if got != want or not found[(session_id, cell_id)].closed:
                problems.append(f"{session_id}/{cell_id}: {got}")
        if store.pending():
            problems.append("observations left pending")
    stats = _cli(db, "stats", "--json")
    totals = json.loads(stats.stdout) if stats.returncode == 0 else {}
    want_totals = {
        "sessions": len(names),
        "cells": len(names) * cells,
        "observations": 2 * len(names) * cells,
        "released": 2 * len(names) * cells,
        "retained": 0,
        "pending": 0,
        "failed": 0,
    }
    if {key: totals.get(key) for key in want_totals} != want_totals:
        problems.append(f"stats --json says {totals or stats.stderr}")
    return problems


def run_contention(
    db: Path, *, workers: int = 8, cells: int = 300, readers: int = 2, threads: int = 1
) -> ContentionReport:
    """Run ``workers`` host-loop processes on ``db`` beside CLI readers.

    Each process runs ``threads`` sessions of ``cells`` cells at once.
    """
    report = ContentionReport(workers, cells, threads)
    names = [f"worker-{n}" for n in range(workers)]
    ObservationStore.open(db).close()
    children = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--worker", str(db), name, str(cells), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in names
    ]
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline() != "ready\n":
            report.problems.append(f"a worker did not start: {child.communicate()[1][-500:]}")
    stop = threading.Event()
    runs_of_reader: list[list[tuple[str, int, str, str]]] = [[] for _ in range(readers)]
    polling = [threading.Thread(target=_reader, args=(db, stop, runs)) for runs in runs_of_reader]
    started = time.monotonic()
    for thread in polling:
        thread.start()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for name, child in zip(names, children, strict=True):
        out, err = child.communicate(timeout=1800)
        if child.returncode != 0 or out != "done\n" or LOCKED in err:
            report.problems.append(f"{name} exited {child.returncode}: {err.strip()[-500:]}")
    report.seconds = time.monotonic() - started
    stop.set()
    for thread in polling:
        thread.join()
    report.write_operations = workers * threads * cells * WRITES_PER_CELL
    for runs in runs_of_reader:
        report.reader_runs += len(runs)
        report.problems += _check_reader_runs(runs)
    sessions = [session for name in names for session in session_names(name, threads)]
    report.problems += _check_rows(db, sessions, cells)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 if anything was lost or locked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--cells", type=int, default=300, help="cells per worker")
    parser.add_argument("--readers", type=int, default=2, help="threads running the CLI in a loop")
    parser.add_argument(
        "--threads", type=int, default=1, help="sessions per worker process, a thread each (group commit)"
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("DB", "SESSION", "CELLS", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        db, worker, cells, threads = args.worker
        worker_main(db, worker, int(cells), int(threads))
        return 0
    with tempfile.TemporaryDirectory(prefix="contention-") as folder:
        report = run_contention(
            Path(folder) / "store.db",
            workers=args.workers,
            cells=args.cells,
            readers=args.readers,
            threads=args.threads,
        )
        size = os.path.getsize(Path(folder) / "store.db")
    for problem in report.problems[:20]:
        print(f"problem: {problem}")
    print(f"workers x cells:   {report.workers} x {report.cells_per_worker} ({report.threads} sessions each)")
    print(f"write operations:  {report.write_operations} ({WRITES_PER_CELL} transactions a cell)")
    print(f"CLI reader runs:   {report.reader_runs}")
    print(
        f"seconds:           {report.seconds:.1f} ({report.write_operations / report.seconds:.0f} writes/s)"
    )
    print(f"store file:        {size:,} bytes")
    print(f"problems:          {len(report.problems)}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
