"""Crash campaign: kill a host-loop writer with SIGKILL at random moments; prove nothing committed is lost.

A child process runs the host loop on one SQLite file, following a plan drawn
from a seed (cells that yield payloads of every size up to a few hundred KB,
complete, get stopped, fail, get released). After each call returns, it appends
one line to a side file: the plan step and the sha256 of the payload it stored.
The parent kills it with SIGKILL at a random moment, replays the same plan, and
checks the store against a model of the reported steps (plus the one step that
may have committed without being reported): every reported operation is there
exactly, every row is wholly retained or wholly a tombstone, ``PRAGMA
integrity_check`` is ok, and ``fail_pending`` resolves the interrupted generation.

Usage::

    .venv/bin/python scripts/crash_campaign.py --kills 200 [--seed N] [--keep DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: test this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import base64  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from typing import Any  # noqa: E402

from codemode_store import ImageItem, ObservationStore, Outcome, TextItem  # noqa: E402
from codemode_store.wire import IMAGE_DETAILS, ContentItem, encode_payload  # noqa: E402

__all__ = [
    "CampaignReport",
    "Model",
    "Op",
    "Row",
    "check_payloads",
    "host_loop",
    "integrity",
    "observe",
    "plan",
    "reported_steps",
    "resolve_interrupted",
    "row_problems",
    "run_campaign",
]

SCRIPT = Path(__file__).resolve()
RESTART_TEXT = "host restarted: observation interrupted"
#: Share of kills aimed at a random moment from the child's start (imports, open,
#: schema creation) instead of the host loop.
EARLY_KILL_SHARE = 0.1
#: Every so many kills, every session of the campaign is checked again.
SWEEP_EVERY = 25


# -- the plan: what the child does, drawn from a seed --------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One step of the host loop: a store call on one cell."""

    action: str  # create | begin | record | fail | release | close
    cell: str
    generation: int | None = None
    outcome: Outcome | None = None
    error_text: str | None = None
    request: dict[str, Any] | None = None

    def payload_sha256(self) -> str:
        """Return the sha256 of the payload this step stores ('-' when it stores none)."""
        if self.outcome is not None:
            return hashlib.sha256(encode_payload(self.outcome)).hexdigest()
        if self.error_text is not None:
            return hashlib.sha256(self.error_text.encode("utf-8")).hexdigest()
        return "-"


#: The largest text of a plan's payloads, unless a campaign asks for larger ones.
LARGEST_TEXT = 300_000


def _text(rng: random.Random, largest: int) -> str:
    roll = rng.random()
    if roll < 0.45:
        size = rng.randint(0, 200)
    elif roll < 0.75:
        size = rng.randint(1_000, 10_000)
    elif roll < 0.9:
        size = rng.randint(10_000, 100_000)
    else:
        size = rng.randint(100_000, max(100_000, largest))
    size = min(size, largest)
    prefix = rng.choice(["", "línea ✓ \U0001f600\n", "tab\tand NUL\x00 "])
    return prefix + rng.randbytes(size // 2 + 1).hex()[:size]


def _items(rng: random.Random, largest: int) -> list[ContentItem]:
    items: list[ContentItem] = [TextItem(_text(rng, largest))]
    for _ in range(rng.choice([0, 0, 1, 2])):
        if rng.random() < 0.5:
            items.append(TextItem(rng.choice(["", "more", "ünïcode"])))
        else:
            data = base64.b64encode(rng.randbytes(rng.randint(10, 3_000))).decode("ascii")
            items.append(ImageItem(f"data:image/png;base64,{data}", rng.choice([None, *IMAGE_DETAILS])))
    return items


def plan(seed: int, largest: int = LARGEST_TEXT) -> Iterator[Op]:
    """Yield the host loop's steps for ``seed``, without end; the same seed gives the same steps.

    ``largest`` bounds the text of a payload (the largest tenth lies between 100 KB and it;
    below 100 KB it caps every text).
    """
    rng = random.Random(seed)

    def items() -> list[ContentItem]:
        return _items(rng, largest)

    for n in itertools.count():
        cell = f"cell-{n}"
        yield Op("create", cell)
        generations = rng.randint(1, 4)
        for g in range(generations):
            request = {"yield_time_ms": rng.choice([0, 250, 10_000])} if rng.random() < 0.5 else None
            yield Op("begin", cell, g, request=request)
            roll = rng.random()
            if g < generations - 1:  # the next begin acknowledges this generation
                if roll < 0.8:
                    yield Op("record", cell, g, outcome=Outcome.yielded(items()))
                elif roll < 0.9:
                    yield Op("record", cell, g, outcome=Outcome.missing())
                else:
                    yield Op("fail", cell, g, error_text=f"runtime lost {cell}/{g}")
            elif roll < 0.45:
                error = rng.choice([None, "Traceback: ValueError: boom"])
                yield Op("record", cell, g, outcome=Outcome.completed(items(), error_text=error))
                if rng.random() < 0.7:
                    yield Op("release", cell, g)
            elif roll < 0.6:
                yield Op("record", cell, g, outcome=Outcome.terminated(items()))
                if rng.random() < 0.5:
                    yield Op("release", cell, g)
            elif roll < 0.75:  # a wait with terminate: the trailing yield of a closed cell
                yield Op("record", cell, g, outcome=Outcome.yielded(items()))
                yield Op("close", cell)
                if rng.random() < 0.6:
                    yield Op("release", cell, g)
            elif roll < 0.85:  # left open, its last yield retained
                yield Op("record", cell, g, outcome=Outcome.yielded(items()))
            elif roll < 0.95:
                yield Op("fail", cell, g, error_text=f"observe of {cell}/{g} failed")
                yield Op("close", cell)
            else:
                yield Op("record", cell, g, outcome=Outcome.missing())


# -- the child -----------------------------------------------------------------------------------------


def child_main(db: str, log: str, seed: int, session_id: str, sessions: int = 1) -> None:
    """Run the plan on ``session_id``, reporting each step on ``log`` after its call returned.

    With several ``sessions``, each runs in a thread of its own on the one store
    (their writes share commits), with the plan and log of :func:`session_parts`.
    """
    store = ObservationStore.open(db)
    loops = []
    for name, part_log, part_seed in session_parts(session_id, Path(log), seed, sessions):
        fd = os.open(part_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, b"open\n")
        loops.append((name, part_seed, fd))
    if sessions == 1:
        name, part_seed, fd = loops[0]
        host_loop(store, name, plan(part_seed), lambda line: os.write(fd, line))
        return
    threads = [threading.Thread(target=_loop_or_exit, args=(store, *loop)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _loop_or_exit(store: ObservationStore, session_id: str, seed: int, fd: int) -> None:
    """Run one session's plan; a failure ends the whole writer (the campaign reports it)."""
    try:
        host_loop(store, session_id, plan(seed), lambda line: os.write(fd, line))
    except BaseException as exc:
        print(f"writer session {session_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(3)


def session_parts(session_id: str, log: Path, seed: int, sessions: int) -> list[tuple[str, Path, int]]:
    """Return the session name, log and plan seed of each of a writer's ``sessions``."""
    parts = [(session_id, log, seed)]
    for index in range(1, sessions):
        name = f"{session_id}-{index}"
        parts.append((name, log.with_name(f"{name}.log"), seed * 1_000 + index))
    return parts


def host_loop(
    store: ObservationStore, session_id: str, steps: Iterator[Op], report: Callable[[bytes], Any]
) -> None:
    """Run ``steps`` on ``session_id``, handing ``report`` one line per step once its call returned.

    Each line is short and whole (one ``write(2)`` of it leaves whole lines after a kill):
    the step's index, action, cell, generation and payload sha256.
    """
    s = store.session(session_id)
    for index, op in enumerate(steps):
        if op.action == "create":
            s.create_cell(op.cell)
        elif op.action == "begin":
            assert op.generation is not None
            replay = s.begin(op.cell, op.generation, op.request)
            if replay is not None:
                raise AssertionError(f"begin of a new generation replayed {replay}")
        elif op.action == "record":
            assert op.generation is not None
            s.record(op.cell, op.generation, op.outcome)
        elif op.action == "fail":
            assert op.generation is not None and op.error_text is not None
            s.fail(op.cell, op.generation, op.error_text)
        elif op.action == "release":
            assert op.generation is not None
            if not s.release(op.cell, op.generation):
                raise AssertionError("a first release did not drop the payload")
        else:
            s.close_cell(op.cell)
        report(f"{index} {op.action} {op.cell} {op.generation} {op.payload_sha256()}\n".encode())


# -- the model: what the store must hold after a given number of steps ------------------------------------


@dataclass(frozen=True)
class Row:
    """What one observation must look like: state, kind, payload size and sha256."""

    state: str
    kind: str | None = None
    size: int | None = None
    sha256: str | None = None


@dataclass
class Model:
    """The cells of one session after some steps of the plan: closed flag and rows."""

    cells: dict[str, tuple[bool, dict[int, Row]]] = field(default_factory=dict)

    def apply(self, op: Op) -> None:
        """Apply one step as docs/protocol.md says it changes the store."""
        if op.action == "create":
            self.cells[op.cell] = (False, {})
            return
        closed, rows = self.cells[op.cell]
        g = op.generation
        if op.action == "begin":
            assert g is not None
            if g > 0 and rows[g - 1].state in ("retained", "failed"):
                rows[g - 1] = replace(rows[g - 1], state="released")
            rows[g] = Row("pending")
        elif op.action == "record":
            assert g is not None and op.outcome is not None
            data = encode_payload(op.outcome)
            rows[g] = Row("retained", op.outcome.kind, len(data), hashlib.sha256(data).hexdigest())
            closed = closed or op.outcome.closes_cell
        elif op.action == "fail":
            assert g is not None and op.error_text is not None
            rows[g] = _failed(op.error_text)
        elif op.action == "release":
            assert g is not None
            rows[g] = replace(rows[g], state="released")
        else:
            closed = True
        self.cells[op.cell] = (closed, rows)

    def fail_pending(self, error_text: str) -> int:
        """Turn every pending row into a failure with ``error_text``; return how many."""
        count = 0
        for _closed, rows in self.cells.values():
            for g, row in rows.items():
                if row.state == "pending":
                    rows[g] = _failed(error_text)
                    count += 1
        return count

    def snapshot(self) -> dict[str, tuple[bool, list[tuple[int, Row]]]]:
        """Return the model in the shape of :func:`observe`."""
        return {cell: (closed, sorted(rows.items())) for cell, (closed, rows) in self.cells.items()}

    def copy(self) -> Model:
        """Return an independent copy."""
        return Model({cell: (closed, dict(rows)) for cell, (closed, rows) in self.cells.items()})


def _failed(error_text: str) -> Row:
    data = error_text.encode("utf-8")
    return Row("failed", None, len(data), hashlib.sha256(data).hexdigest())


def observe(store: ObservationStore, session_id: str) -> dict[str, tuple[bool, list[tuple[int, Row]]]]:
    """Return what the store holds for a session, through ``cells()`` and ``history()``."""
    s = store.session(session_id)
    result = {}
    for summary in store.cells(session_id):
        rows = [
            (o.generation, Row(o.state, o.kind, o.payload_bytes, o.payload_sha256))
            for o in s.history(summary.cell_id)
        ]
        result[summary.cell_id] = (summary.closed, rows)
    return result


# -- checks on the file itself ---------------------------------------------------------------------------


def integrity(path: Path) -> list[str]:
    """Return what ``PRAGMA integrity_check`` says about the file (``["ok"]`` when sound)."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


_ROWS = (
    "SELECT session_id, cell_id, generation, state, kind, payload_bytes, payload_sha256, payload "
    "FROM observations"
)


def row_problems(path: Path, session_id: str | None = None) -> tuple[int, list[str]]:
    """Check every observation (of one session, or all) is wholly retained or wholly a tombstone.

    Return how many rows were looked at and what is wrong with them.
    """
    conn = sqlite3.connect(path)
    try:
        if session_id is None:
            rows = conn.execute(_ROWS).fetchall()
        else:
            rows = conn.execute(_ROWS + " WHERE session_id = ?", (session_id,)).fetchall()
    finally:
        conn.close()
    problems = []
    for session, cell, g, state, kind, size, sha, payload in rows:
        where = f"{session}/{cell}/{g} ({state})"
        if state in ("retained", "failed"):
            if payload is None:
                problems.append(f"{where}: no payload")
            elif len(payload) != size or hashlib.sha256(payload).digest() != sha:
                problems.append(f"{where}: payload does not match its size and sha256")
            if (kind is None) != (state == "failed"):
                problems.append(f"{where}: kind {kind!r}")
        elif state == "released":
            if payload is not None or size is None or sha is None:
                problems.append(f"{where}: not a whole tombstone")
        elif state == "pending":
            if payload is not None or size is not None or sha is not None or kind is not None:
                problems.append(f"{where}: a pending row holds a result")
        else:
            problems.append(f"{where}: unknown state")
    return len(rows), problems


# -- one kill ----------------------------------------------------------------------------------------------


@dataclass
class KillResult:
    """What one kill showed: steps reported (and verified), the model now expected, violations."""

    reported: int
    model: Model
    violations: list[str]
    early: bool
    #: Every session's model (the first is ``model``).
    models: dict[str, Model] = field(default_factory=dict)


def _spawn(db: Path, log: Path, seed: int, session_id: str, sessions: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--child", str(db), str(log), str(seed), session_id, str(sessions)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def _wait_for_open(child: subprocess.Popen[bytes], log: Path, limit: float = 60.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if log.exists() and log.stat().st_size > 0:
            return True
        if child.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def reported_steps(log: Path) -> tuple[list[list[str]], bool]:
    """Return the whole step lines of the side file, and whether the store was opened."""
    if not log.exists():
        return [], False
    lines = log.read_bytes().decode("utf-8").split("\n")
    whole = lines[:-1]  # the last piece has no newline: empty, or a line cut by the kill
    opened = bool(whole) and whole[0] == "open"
    return [line.split(" ") for line in whole[1:]], opened


def kill_once(
    db: Path, work: Path, run: int, seed: int, rng: random.Random, max_delay: float, sessions: int = 1
) -> KillResult:
    """Start the writer on session ``run-<run>`` (and those beside it), kill it at random, check the store."""
    session_id = f"run-{run}"
    log = work / f"{session_id}.log"
    child = _spawn(db, log, seed, session_id, sessions)
    early = rng.random() < EARLY_KILL_SHARE
    violations: list[str] = []
    if early:
        time.sleep(rng.uniform(0, 1.0))
    elif _wait_for_open(child, log):
        time.sleep(rng.uniform(0, max_delay))
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    _out, err = child.communicate(timeout=60)
    if child.returncode != -signal.SIGKILL:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        violations.append(f"{session_id}: the writer ended by itself ({child.returncode}): {tail}")

    parts = []
    reported = 0
    for name, part_log, part_seed in session_parts(session_id, log, seed, sessions):
        steps, opened = reported_steps(part_log)
        if steps and not opened:
            violations.append(f"{name}: steps reported before the store was opened")
        ops = list(itertools.islice(plan(part_seed), len(steps) + 1))
        model = Model()
        for index, (step, op) in enumerate(zip(steps, ops, strict=False)):
            expected = [str(index), op.action, op.cell, str(op.generation), op.payload_sha256()]
            if step != expected:
                violations.append(f"{name}: step {index} reported as {step}, planned as {expected}")
            model.apply(op)
        with_next = model.copy()
        with_next.apply(ops[len(steps)])
        parts.append((name, ops, model, with_next))
        reported += len(steps)

    check = integrity(db)
    if check != ["ok"]:
        violations.append(f"{session_id}: integrity_check says {check[:3]}")
    models: dict[str, Model] = {}
    with ObservationStore.open(db) as store:
        for name, ops, model, with_next in parts:
            violations += check_session(store, name, ops, model, with_next)
            models[name] = model if observe(store, name) == model.snapshot() else with_next
            _count, problems = row_problems(db, name)
            violations += problems
        if sessions == 1:
            violations += resolve_interrupted(store, session_id, models[session_id])
        else:
            violations += resolve_together(store, models)
    return KillResult(reported, models[session_id], violations, early, models)


def check_session(
    store: ObservationStore, session_id: str, ops: list[Op], model: Model, with_next: Model
) -> list[str]:
    """Check the session is the model after the reported steps, or after one more; payloads exact."""
    found = observe(store, session_id)
    if found not in (model.snapshot(), with_next.snapshot()):
        return [f"{session_id}: the store holds {_diff(found, model.snapshot(), with_next.snapshot())}"]
    return check_payloads(store, session_id, ops, found)


def check_payloads(
    store: ObservationStore,
    session_id: str,
    ops: list[Op],
    found: dict[str, tuple[bool, list[tuple[int, Row]]]],
) -> list[str]:
    """Check every retained outcome and failure of ``found`` reads back as the plan stored it."""
    violations = []
    recorded = {(op.cell, op.generation): op for op in ops if op.action in ("record", "fail")}
    s = store.session(session_id)
    for cell, (_closed, rows) in found.items():
        for g, row in rows:
            if row.state not in ("retained", "failed"):
                continue
            observation = s.get(cell, g)
            op = recorded[(cell, g)]
            if observation is None:
                violations.append(f"{session_id}/{cell}/{g}: get() returned nothing")
            elif row.state == "retained" and observation.outcome != op.outcome:
                violations.append(f"{session_id}/{cell}/{g}: the outcome read back differs")
            elif row.state == "failed" and observation.error_text != op.error_text:
                violations.append(f"{session_id}/{cell}/{g}: the error text read back differs")
    return violations


def _diff(found: dict[str, Any], *expected: dict[str, Any]) -> str:
    for cell in sorted(set(found) | set(expected[0]) | set(expected[1])):
        if found.get(cell) not in (expected[0].get(cell), expected[1].get(cell)):
            return f"{cell}: {found.get(cell)}; expected {expected[0].get(cell)} or {expected[1].get(cell)}"
    return "a different set of cells"


def resolve_interrupted(store: ObservationStore, session_id: str, model: Model) -> list[str]:
    """Run fail_pending as a restarted host does; check it failed exactly the interrupted rows."""
    violations = []
    pending = store.pending()
    strays = [o for o in pending if o.session_id != session_id]
    if strays:
        violations.append(f"{session_id}: rows of other sessions still pending: {strays[:3]}")
    expected = model.fail_pending(RESTART_TEXT)
    resolved = store.fail_pending(RESTART_TEXT)
    if resolved != len(pending) or resolved != expected:
        violations.append(f"{session_id}: fail_pending resolved {resolved}, {len(pending)} were pending")
    if store.pending():
        violations.append(f"{session_id}: rows still pending after fail_pending")
    if observe(store, session_id) != model.snapshot():
        violations.append(f"{session_id}: after fail_pending the store is not the model")
    s = store.session(session_id)
    for o in pending:
        replay = s.begin(o.cell_id, o.generation)
        if replay is None or replay.state != "failed" or replay.error_text != RESTART_TEXT:
            violations.append(f"{session_id}/{o.cell_id}/{o.generation}: replay after restart is {replay}")
    return violations


def resolve_together(store: ObservationStore, models: dict[str, Model]) -> list[str]:
    """Run fail_pending once for sessions interrupted together; check it failed exactly their rows."""
    violations = []
    pending = store.pending()
    strays = [o for o in pending if o.session_id not in models]
    if strays:
        violations.append(f"rows of other sessions still pending: {strays[:3]}")
    expected = sum(model.fail_pending(RESTART_TEXT) for model in models.values())
    resolved = store.fail_pending(RESTART_TEXT)
    if resolved != len(pending) or resolved != expected:
        violations.append(f"fail_pending resolved {resolved}; {len(pending)} pending, {expected} expected")
    if store.pending():
        violations.append("rows still pending after fail_pending")
    for session_id, model in models.items():
        if observe(store, session_id) != model.snapshot():
            violations.append(f"{session_id}: after fail_pending the store is not the model")
    for o in pending:
        replay = store.session(o.session_id).begin(o.cell_id, o.generation)
        if replay is None or replay.state != "failed" or replay.error_text != RESTART_TEXT:
            violations.append(f"{o.session_id}/{o.cell_id}/{o.generation}: replay after restart is {replay}")
    return violations


# -- the campaign ------------------------------------------------------------------------------------------


@dataclass
class CampaignReport:
    """The figures of a campaign."""

    kills: int = 0
    early_kills: int = 0
    operations_verified: int = 0
    rows_checked: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    file_bytes: int = 0


def _sweep(db: Path, models: dict[str, Model]) -> tuple[int, list[str]]:
    """Check every session of the campaign still holds what it held after its own kill."""
    violations = []
    with ObservationStore.open(db) as store:
        for session_id, model in models.items():
            if observe(store, session_id) != model.snapshot():
                violations.append(f"{session_id}: changed after a later kill")
    count, problems = row_problems(db)
    return count, violations + problems


def run_campaign(
    kills: int,
    *,
    seed: int = 0,
    folder: Path | None = None,
    max_delay: float = 0.4,
    sweep_every: int = SWEEP_EVERY,
    sessions: int = 1,
    echo: Callable[[str], None] | None = None,
) -> CampaignReport:
    """Kill the writer ``kills`` times on one store file in ``folder`` (a temporary one if None).

    Each writer runs ``sessions`` sessions at once (threads sharing commits).
    """
    started = time.monotonic()
    report = CampaignReport()
    rng = random.Random(seed)
    models: dict[str, Model] = {}
    with tempfile.TemporaryDirectory(prefix="crash-campaign-") as scratch:
        work = Path(folder) if folder is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "campaign.db"
        for run in range(kills):
            result = kill_once(db, work, run, seed * 100_003 + run, rng, max_delay, sessions)
            report.kills += 1
            report.early_kills += result.early
            report.operations_verified += result.reported
            report.violations += result.violations
            models.update(result.models)
            if (run + 1) % sweep_every == 0 or run + 1 == kills:
                rows, problems = _sweep(db, models)
                report.rows_checked += rows
                report.violations += problems
            if echo is not None and (run + 1) % 10 == 0:
                echo(
                    f"{run + 1} kills, {report.operations_verified} operations verified, "
                    f"{len(report.violations)} violations"
                )
        report.file_bytes = db.stat().st_size
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 if any invariant was violated."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="how many times to kill the writer")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed of the plans and kills")
    parser.add_argument("--keep", type=Path, help="keep the store and side files in this folder")
    parser.add_argument("--max-delay", type=float, default=0.4, help="longest wait before a kill (s)")
    parser.add_argument(
        "--sessions", type=int, default=1, help="sessions each writer runs at once (a thread each)"
    )
    parser.add_argument(
        "--child", nargs=5, metavar=("DB", "LOG", "SEED", "SESSION", "SESSIONS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        db, log, child_seed, session_id, sessions = args.child
        child_main(db, log, int(child_seed), session_id, int(sessions))
        return 0
    print(
        f"crash campaign: {args.kills} kills, {args.sessions} sessions per writer, seed {args.seed}",
        flush=True,
    )
    report = run_campaign(
        args.kills,
        seed=args.seed,
        folder=args.keep,
        max_delay=args.max_delay,
        sessions=args.sessions,
        echo=print,
    )
    for violation in report.violations[:20]:
        print(f"violation: {violation}")
    print(f"kills:               {report.kills} ({report.early_kills} during start-up)")
    print(f"operations verified: {report.operations_verified}")
    print(f"rows checked:        {report.rows_checked} (whole file, every {SWEEP_EVERY} kills)")
    print(f"violations:          {len(report.violations)}")
    print(f"store file:          {report.file_bytes:,} bytes")
    print(f"time:                {report.seconds:.1f} s")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
