"""Moving a store: copy rows/s and peak memory, 64 MiB payloads, backup while a host writes.

Run by hand (it is not part of ``benchmarks.run``: its stores are large)::

    python -m benchmarks.transfer --observations 1000000 --big-payloads 4 \\
        [--postgres postgresql+psycopg://...] [--rounds 3] [--folder /tmp/x]

Each figure comes from a child process of its own, which prints its wall time
and its peak RSS (``VmHWM``); the baselines run the same way:

- ``copy``: ``codemode_store.transfer.copy_to`` from a SQLite store into a new
  SQLite file (and a new PostgreSQL database with ``--postgres``), against SQLite
  itself copying the same tables (``ATTACH`` and ``INSERT INTO ... SELECT``, one
  transaction, same pragmas): the floor of any copy. Peak RSS against a child
  that opens the same two stores and copies nothing.
- ``big``: the same with ``--big-payloads`` payloads of 64 MiB (the default
  ``max_payload_bytes``), where the bound on memory shows: peak RSS is given in
  payloads (peak minus the idle child, divided by 64 MiB). Export and import of
  one such session too.
- ``backup``: ``transfer.backup`` of the million-row store, with and without a
  host process writing (begin + record, ``durability="full"``) all the while,
  against ``cp`` of the file; and the host's writes per second during the
  backup against without one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, insert, text

from benchmarks.common import median, ratio
from codemode_store import ObservationStore
from codemode_store.schema import cells, observations

MIB = 1024 * 1024
BIG = 64 * MIB - 4096  # under the default max_payload_bytes with room for nothing else


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# -- building stores ------------------------------------------------------------------------------


def build_many(path: Path, total: int, generations: int = 10, cells_per_session: int = 100) -> None:
    """Write ``total`` observations into a new store: each cell's last generation retained (1 KiB)."""
    payload = (b'[{"type":"input_text","text":"' + b"x" * 990 + b'"}]')[:1024]
    digest = hashlib.sha256(payload).digest()
    cell_count = total // generations
    with ObservationStore.open(path) as store:
        now = int(time.time() * 1e6)
        with store.engine.begin() as conn:
            cell_rows, obs_rows = [], []
            for index in range(cell_count):
                session, cell = (
                    f"session-{index // cells_per_session:05d}",
                    f"cell-{index % cells_per_session:03d}",
                )
                cell_rows.append(
                    {"session_id": session, "cell_id": cell, "closed": True,
                     "last_generation": generations - 1, "created_at": now}
                )  # fmt: skip
                for generation in range(generations):
                    last = generation == generations - 1
                    obs_rows.append(
                        {"session_id": session, "cell_id": cell, "generation": generation,
                         "state": "retained" if last else "released",
                         "kind": "completed" if last else "yielded",
                         "payload_bytes": len(payload), "payload_sha256": digest, "begun_at": now,
                         "recorded_at": now, "released_at": None if last else now, "request": None,
                         "payload": payload if last else None}
                    )  # fmt: skip
                if len(obs_rows) >= 50_000:
                    conn.execute(insert(cells), cell_rows)
                    conn.execute(insert(observations), obs_rows)
                    cell_rows, obs_rows = [], []
            if cell_rows:
                conn.execute(insert(cells), cell_rows)
                conn.execute(insert(observations), obs_rows)


def build_big(path: Path, count: int) -> None:
    """Write ``count`` retained observations of a 64 MiB payload each, in one session, one cell each."""
    with ObservationStore.open(path) as store:
        now = int(time.time() * 1e6)
        for index in range(count):
            payload = os.urandom(BIG)
            with store.engine.begin() as conn:
                conn.execute(
                    insert(cells),
                    {"session_id": "big", "cell_id": f"c{index}", "closed": True, "last_generation": 0,
                     "created_at": now},
                )  # fmt: skip
                conn.execute(
                    insert(observations),
                    {"session_id": "big", "cell_id": f"c{index}", "generation": 0, "state": "retained",
                     "kind": "completed", "payload_bytes": len(payload),
                     "payload_sha256": hashlib.sha256(payload).digest(), "begun_at": now, "recorded_at": now,
                     "released_at": None, "request": None, "payload": payload},
                )  # fmt: skip
            del payload


# -- what a child measures --------------------------------------------------------------------------


def child(task: str, args: list[str]) -> dict[str, Any]:
    """Run one measured task in this (child) process; return its seconds and peak RSS."""
    from codemode_store.transfer import backup, copy_to, export_session, import_session

    start = time.perf_counter()
    result: dict[str, Any] = {}
    if task == "copy":
        with ObservationStore.open(args[0]) as source:
            report = copy_to(source, args[1])
        result["rows"] = report.rows
    elif task == "idle":
        with ObservationStore.open(args[0]) as source, ObservationStore.open(args[1]) as target:
            source.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM alembic_version").all())
            target.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM alembic_version").all())
    elif task == "sqlite-floor":
        connection = __import__("sqlite3").connect(args[1], isolation_level=None)
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("ATTACH ? AS src", (args[0],))
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO cells SELECT * FROM src.cells")
        connection.execute("INSERT INTO observations SELECT * FROM src.observations")
        connection.execute("COMMIT")
        connection.close()
    elif task == "backup":
        with ObservationStore.open(args[0]) as source:
            backed = backup(source, args[1])
        result.update(copy_seconds=backed.copy_seconds, check_seconds=backed.check_seconds)
    elif task == "export":
        with ObservationStore.open(args[0]) as source, open(args[1], "wb") as out:
            export_session(source, args[2], out)
    elif task == "import":
        with ObservationStore.open(args[0]) as target, open(args[1], "rb") as file:
            import_session(target, file)
    elif task == "host":
        # Writes begin + record until the file named by args[1] appears; prints writes/s per phase.
        stop, marks = Path(args[1]), Path(args[2])
        from codemode_store import Outcome, TextItem

        with ObservationStore.open(args[0]) as store:
            s = store.session(f"host-{uuid.uuid4().hex[:8]}")
            s.create_cell("c")
            generation, stamps = 0, []
            while not stop.exists():
                s.begin("c", generation)
                s.record("c", generation, Outcome.yielded([TextItem("x" * 2000)]))
                stamps.append(time.time())
                generation += 1
            marks.write_text(json.dumps(stamps))
    result.update(seconds=time.perf_counter() - start, peak_kib=_peak_kib())
    return result


def run_child(task: str, *args: str) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter; return what it measured."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.transfer", "--child", task, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _fresh(folder: Path, name: str) -> Path:
    path = folder / name
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    return path


def _empty_store(folder: Path, name: str) -> Path:
    path = _fresh(folder, name)
    ObservationStore.open(path).close()
    return path


def _postgres_database(admin_url: str) -> str:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return engine.url.set(database=name).render_as_string(hide_password=False)


def _drop_postgres(admin_url: str, url: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = create_engine(url).url.database
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# -- the measurements ---------------------------------------------------------------------------------


def measure_copy(
    folder: Path, source: Path, rounds: int, postgres: str | None, label: str
) -> list[dict[str, Any]]:
    """Copy ``source`` into new SQLite files (and PostgreSQL databases): seconds, rows/s, peak RSS."""
    results = []
    times: dict[str, list[float]] = {"store": [], "floor": [], "pg": []}
    peaks: dict[str, list[int]] = {"store": [], "idle": [], "pg": [], "floor": []}
    rows = 0
    for _ in range(rounds):
        target = _fresh(folder, "copy-target.db")
        done = run_child("copy", str(source), str(target))
        times["store"].append(done["seconds"])
        peaks["store"].append(done["peak_kib"])
        rows = done["rows"]
        idle = run_child("idle", str(source), str(target))
        peaks["idle"].append(idle["peak_kib"])
        floor_target = _empty_store(folder, "floor-target.db")
        floor_run = run_child("sqlite-floor", str(source), str(floor_target))
        times["floor"].append(floor_run["seconds"])
        peaks["floor"].append(floor_run["peak_kib"])
        if postgres:
            url = _postgres_database(postgres)
            try:
                done = run_child("copy", str(source), url)
                times["pg"].append(done["seconds"])
                peaks["pg"].append(done["peak_kib"])
            finally:
                _drop_postgres(postgres, url)
    store, floor = median(times["store"]), median(times["floor"])
    results.append(
        {"workload": label, "target": "sqlite", "rows": rows, "seconds": round(store, 2),
         "rows_per_s": round(rows / store), "vs_sqlite_insert_select": ratio(store, floor),
         "floor_seconds": round(floor, 2), "peak_rss_mib": round(median(peaks["store"]) / 1024, 1),
         "idle_rss_mib": round(median(peaks["idle"]) / 1024, 1),
         "floor_rss_mib": round(median(peaks["floor"]) / 1024, 1),
         "seconds_range": [round(min(times["store"]), 2), round(max(times["store"]), 2)]}
    )  # fmt: skip
    if postgres:
        pg = median(times["pg"])
        results.append(
            {"workload": label, "target": "postgresql", "rows": rows, "seconds": round(pg, 2),
             "rows_per_s": round(rows / pg), "peak_rss_mib": round(median(peaks["pg"]) / 1024, 1),
             "seconds_range": [round(min(times["pg"]), 2), round(max(times["pg"]), 2)]}
        )  # fmt: skip
    return results


def measure_big_files(folder: Path, source: Path) -> dict[str, Any]:
    """Export and import of one session of 64 MiB payloads: seconds and peak RSS."""
    file = _fresh(folder, "big.jsonl")
    exported = run_child("export", str(source), str(file), "big")
    target = _empty_store(folder, "big-import.db")
    imported = run_child("import", str(target), str(file))
    return {
        "workload": "export/import, 64 MiB payloads",
        "export_seconds": round(exported["seconds"], 2),
        "export_peak_rss_mib": round(exported["peak_kib"] / 1024, 1),
        "import_seconds": round(imported["seconds"], 2),
        "import_peak_rss_mib": round(imported["peak_kib"] / 1024, 1),
        "file_mib": round(file.stat().st_size / MIB, 1),
    }


def measure_backup(folder: Path, original: Path, rounds: int) -> dict[str, Any]:
    """Back up a copy of ``original`` with and without a host writing; against ``cp``; the host's writes/s."""
    source = _fresh(folder, "backup-source.db")  # the host writes into it: never into the shared store
    shutil.copyfile(original, source)
    quiet, busy, copies, during, alone = [], [], [], [], []
    steps: dict[str, list[float]] = {"quiet_copy": [], "busy_copy": [], "check": []}
    for _ in range(rounds):
        start = time.perf_counter()
        shutil.copyfile(source, _fresh(folder, "cp.db"))
        copies.append(time.perf_counter() - start)
        done = run_child("backup", str(source), str(_fresh(folder, "backup-quiet.db")))
        quiet.append(done["seconds"])
        steps["quiet_copy"].append(done["copy_seconds"])
        steps["check"].append(done["check_seconds"])
        stop, marks = _fresh(folder, "host.stop"), _fresh(folder, "host.marks")
        host = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.transfer",
                "--child",
                "host",
                str(source),
                str(stop),
                str(marks),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(2.0)  # the host's pace alone
        begun = time.time()
        done = run_child("backup", str(source), str(_fresh(folder, "backup-busy.db")))
        busy.append(done["seconds"])
        steps["busy_copy"].append(done["copy_seconds"])
        ended = time.time()
        time.sleep(2.0)
        stop.write_text("")
        host.wait()
        stamps = json.loads(marks.read_text())
        inside = [t for t in stamps if begun <= t <= ended]
        outside = [t for t in stamps if t < begun - 0.2 or t > ended + 0.2]
        outside_span = (begun - stamps[0]) + (stamps[-1] - ended) if stamps else 1.0
        during.append(len(inside) / max(ended - begun, 1e-9))
        alone.append(len(outside) / max(outside_span, 1e-9))
    return {
        "workload": "backup",
        "file_mib": round(source.stat().st_size / MIB, 1),
        "cp_seconds": round(median(copies), 2),
        "quiet_seconds": round(median(quiet), 2),
        "busy_seconds": round(median(busy), 2),
        "busy_seconds_range": [round(min(busy), 2), round(max(busy), 2)],
        "page_copy_seconds_quiet": round(median(steps["quiet_copy"]), 2),
        "page_copy_seconds_busy": round(median(steps["busy_copy"]), 2),
        "page_copy_busy_range": [round(min(steps["busy_copy"]), 2), round(max(steps["busy_copy"]), 2)],
        "check_seconds": round(median(steps["check"]), 2),
        "page_copy_quiet_vs_cp": ratio(median(steps["quiet_copy"]), median(copies)),
        "quiet_vs_cp": ratio(median(quiet), median(copies)),
        "busy_vs_quiet": ratio(median(busy), median(quiet)),
        "host_writes_per_s_alone": round(median(alone), 1),
        "host_writes_per_s_during_backup": round(median(during), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Build the stores, measure, print one JSON object per figure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--big-payloads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="an admin URL of a PostgreSQL server (CREATE DATABASE)")
    parser.add_argument("--folder", type=Path, help="where the stores go (default: a new temporary folder)")
    parser.add_argument("--only", choices=("many", "big", "backup"), action="append")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return 0
    folder = args.folder or Path(__import__("tempfile").mkdtemp(prefix="transfer-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("many", "big", "backup"))
    many = folder / f"many-{args.observations}.db"
    if ("many" in only or "backup" in only) and not many.exists():
        start = time.perf_counter()
        build_many(many, args.observations)
        print(json.dumps({"built": str(many), "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    if "many" in only:
        for row in measure_copy(
            folder, many, args.rounds, args.postgres, f"copy, {args.observations:,} observations"
        ):
            print(json.dumps(row), flush=True)
    if "big" in only:
        big = folder / f"big-{args.big_payloads}.db"
        if not big.exists():
            build_big(big, args.big_payloads)
        label = f"copy, {args.big_payloads} payloads of 64 MiB"
        for row in measure_copy(folder, big, max(1, args.rounds - 1), args.postgres, label):
            row["peak_rss_in_payloads"] = round((row["peak_rss_mib"] - row.get("idle_rss_mib", 60)) / 64, 2)
            print(json.dumps(row), flush=True)
        print(json.dumps(measure_big_files(folder, big)), flush=True)
    if "backup" in only:
        print(json.dumps(measure_backup(folder, many, args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
