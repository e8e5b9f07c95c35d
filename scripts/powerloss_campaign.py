"""Power-loss campaign: cut the power under a host-loop writer; prove nothing acknowledged is lost.

The store lives on a lossy FUSE filesystem (``scripts/lossyfs.py``) that keeps
every write in memory until it is synced. Each cut: mount the filesystem fresh
from its backing folder (the restart), check what the previous cut left, start
a writer that runs the crash campaign's host loop on a new session (payloads
up to 1 MB), and cut the power at a random write-type operation of the writer
(or at a random moment), in ``drop`` or ``torn`` mode; the writer dies with the
power. The writer logs every acknowledged step outside the mount, synced.

After each cut the campaign checks: ``PRAGMA integrity_check`` is ok; the
session holds exactly the plan's first j steps (nothing that was never begun),
and j is at least the number of acknowledged steps (under ``full``; under
``normal`` the shortfall is the loss, and it must be a tail: the state is still
some prefix of the plan); payloads read back byte for byte with their sha256;
``fail_pending`` resolves every interrupted generation; every earlier session
still holds what it held; and the store keeps working (the next writer, and a
last host loop at the end).

With ``--sessions K`` each writer runs K sessions at once, a thread each with a
plan and a log of its own, so that their writes share commits (SQLite group
commit, SPEC §6); every session is checked as above, and a cut of the writer
cuts all of them.

Usage::

    .venv/bin/python scripts/powerloss_campaign.py --cuts 1000 --durability full --mode mixed --seed 1
    .venv/bin/python scripts/powerloss_campaign.py --cuts 300 --sessions 8 --durability full --seed 2
    .venv/bin/python scripts/powerloss_campaign.py --cuts 200 --durability normal --mode mixed
    .venv/bin/python scripts/powerloss_campaign.py --cuts 20 --synchronous-off   # must report faults

Exit status 1 on any corruption, any state that is not a prefix of the plan,
and any acknowledged step lost under ``full``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: test this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import event  # noqa: E402

from codemode_store import ObservationStore  # noqa: E402
from codemode_store.engine import Durability  # noqa: E402
from codemode_store.errors import StoreError  # noqa: E402
from scripts.crash_campaign import (  # noqa: E402
    Model,
    Op,
    check_payloads,
    host_loop,
    integrity,
    observe,
    plan,
    reported_steps,
    resolve_interrupted,
    resolve_together,
    row_problems,
)
from scripts.lossyfs import CUT_MODES, LossyMount  # noqa: E402

__all__ = ["PowerLossReport", "run_campaign"]

#: The largest text of one payload: payloads run from about 100 B to 1 MB.
LARGEST_TEXT = 1_000_000
#: Share of cuts that come at a random moment (on request) instead of at a counted operation.
REQUEST_SHARE = 0.1
#: Share of cuts aimed at the writer's first write-type operations (opening, creating the file).
STARTUP_SHARE = 0.15
#: Counted cuts come at a write-type operation drawn up to this many.
LAST_OPERATION = 3_000
#: Every so many cuts the campaign starts on a new store, whose creation the next cut hits.
FRESH_EVERY = 50
#: Sessions kept in the store; older ones are ended (and must stay gone).
KEEP_SESSIONS = 12
#: Every so many cuts, every session of the store is checked again.
SWEEP_EVERY = 25
DB_NAME = "store.db"
SCRIPT = Path(__file__).resolve()


@dataclass
class PowerLossReport:
    """The figures of a campaign."""

    durability: str = "full"
    synchronous_off: bool = False
    sessions: int = 1  # sessions each writer runs at once
    cuts: int = 0
    cuts_by_mode: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUT_MODES, 0))
    cuts_on_request: int = 0
    cuts_during_startup: int = 0
    cuts_during_creation: int = 0
    acknowledged: int = 0
    lost: int = 0
    cuts_with_loss: int = 0
    largest_loss: int = 0
    cuts_losing_all: int = 0  # cuts that lost every step their writer acknowledged
    corrupt: int = 0
    stores: int = 1
    rows_checked: int = 0
    final_steps: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    file_bytes: int = 0

    @property
    def faults(self) -> int:
        """Return how many faults the campaign saw: lost steps plus corrupt stores."""
        return self.lost + self.corrupt


# -- the writer: a process of its own on the mount -----------------------------------------------------------


def synchronous_off(store: ObservationStore) -> None:
    """Make the store's SQLite connections run with ``synchronous=OFF`` (the harness's own switch)."""
    engine = store.engine

    @event.listens_for(engine, "connect")
    def off(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous = OFF")
        finally:
            cursor.close()

    engine.dispose()  # the connections opened before the listener are not used again
    with engine.connect() as conn:
        setting = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    if setting != 0:
        raise AssertionError(f"synchronous is {setting}, not OFF")


def writer_main() -> int:
    """Import everything, wait for a cut's orders on stdin, then run its host loop on the mount.

    Started ahead of its cut (see :class:`Writers`), so that starting Python and
    importing the store overlap the previous cut. Logs each acknowledged step
    outside the mount, synced, before the next call.
    """
    line = sys.stdin.readline()
    if not line:
        return 0  # started ahead for a cut that never came
    orders = json.loads(line)
    fd = os.open(orders["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def report(line: bytes) -> None:
        os.write(fd, line)
        os.fdatasync(fd)

    store = ObservationStore.open(orders["db"], durability=orders["durability"])
    if orders["sync_off"]:
        synchronous_off(store)
    report(b"open\n")
    loops = [(orders["session_id"], orders["seed"], report)]
    loops += [(part["session_id"], part["seed"], _side_log(part["log"])) for part in orders["parts"]]
    if len(loops) == 1:
        host_loop(store, orders["session_id"], plan(orders["seed"], orders["largest"]), report)
        return 0
    # Sessions at once, a thread each: their writes share the store's commits.
    threads = [
        threading.Thread(target=_loop_or_exit, args=(store, session_id, plan(seed, orders["largest"]), log))
        for session_id, seed, log in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


def _loop_or_exit(
    store: ObservationStore, session_id: str, steps: Any, report: Callable[[bytes], None]
) -> None:
    """Run one session's host loop; a failure ends the whole writer (the campaign reports it)."""
    try:
        host_loop(store, session_id, steps, report)
    except BaseException as exc:
        print(f"writer session {session_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(3)


def _side_log(path: str) -> Callable[[bytes], None]:
    """Open a session's log (outside the mount) and say the store is open; return its synced writer."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def report(line: bytes) -> None:
        os.write(fd, line)
        os.fdatasync(fd)

    report(b"open\n")
    return report


class Writers:
    """Writer processes started one cut ahead, each waiting for its orders."""

    def __init__(self) -> None:
        """Start the first writer."""
        self._next = self._start()

    @staticmethod
    def _start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(SCRIPT), "--writer"], stdin=subprocess.PIPE, cwd=ROOT)

    def take(self) -> subprocess.Popen[bytes]:
        """Return a started writer (and start the next one)."""
        writer, self._next = self._next, self._start()
        return writer

    def close(self) -> None:
        """End the writer nobody took: no orders, so it exits."""
        assert self._next.stdin is not None
        self._next.stdin.close()
        self._next.wait()


# -- one cut ------------------------------------------------------------------------------------------


@dataclass
class Cut:
    """What one cut was: its session, mode, trigger, and whether the writer died of it."""

    session_id: str
    seed: int
    mode: str
    trigger: str  # "request", "creation", "startup" or "operation"
    log: Path
    largest: int = LARGEST_TEXT
    violations: list[str] = field(default_factory=list)
    #: The sessions the writer ran besides the first (``--sessions``), each a cut of its own.
    more: list[Cut] = field(default_factory=list)

    def parts(self) -> list[Cut]:
        """Return this session's cut and those of the sessions that ran beside it."""
        return [self, *self.more]


def cut_writer(
    mount: LossyMount,
    writers: Writers,
    db: Path,
    logs: Path,
    run: int,
    seed: int,
    rng: random.Random,
    mode: str,
    durability: Durability,
    sync_off: bool,
    fresh: bool,
    last_operation: int = LAST_OPERATION,
    largest: int = LARGEST_TEXT,
    sessions: int = 1,
) -> Cut:
    """Start a writer on session ``run-<run>`` (and ``run-<run>-<i>`` beside it) and cut the power under it.

    On a ``fresh`` store (no file yet) the cut comes while the writer creates it.
    """
    session_id = f"run-{run}"
    log = logs / f"{session_id}.log"
    roll = rng.random()
    if fresh:
        trigger = "creation"
    elif roll < REQUEST_SHARE:
        trigger = "request"
    elif roll < REQUEST_SHARE + STARTUP_SHARE:
        trigger = "startup"
    else:
        trigger = "operation"
    cut = Cut(session_id, seed, mode, trigger, log, largest)
    for index in range(1, sessions):
        name = f"{session_id}-{index}"
        cut.more.append(Cut(name, seed * 1_000 + index, mode, trigger, logs / f"{name}.log", largest))
    writer = writers.take()
    assert writer.stdin is not None
    try:
        mount.victim(writer.pid)
        if trigger == "creation":
            mount.arm(rng.randint(1, 300), mode, rng.randrange(2**32))
        elif trigger == "startup":
            mount.arm(rng.randint(1, 80), mode, rng.randrange(2**32))
        elif trigger == "operation":
            mount.arm(rng.randint(80, last_operation), mode, rng.randrange(2**32))
        orders = {
            "db": str(db),
            "log": str(log),
            "seed": seed,
            "session_id": session_id,
            "durability": durability,
            "sync_off": sync_off,
            "largest": largest,
            "parts": [
                {"session_id": part.session_id, "seed": part.seed, "log": str(part.log)} for part in cut.more
            ],
        }
        writer.stdin.write(json.dumps(orders).encode() + b"\n")
    finally:
        writer.stdin.close()
    if trigger == "request":
        time.sleep(rng.uniform(0.05, 1.5))
        mount.cut(mode, rng.randrange(2**32))
    returncode = _wait_for_cut(mount, writer, cut)
    if returncode != -signal.SIGKILL:
        cut.violations.append(f"{session_id}: the writer was not killed by the cut (exit {returncode})")
    return cut


def _wait_for_cut(mount: LossyMount, writer: subprocess.Popen[bytes], cut: Cut, limit: float = 300.0) -> int:
    """Wait until the power went and the writer died; return the writer's exit code."""
    deadline = time.monotonic() + limit
    while mount.wait_cut(0.2) is None:
        if writer.poll() is not None:  # the writer ended before the power went: a failure of its own
            cut.violations.append(f"{cut.session_id}: the writer ended by itself ({writer.returncode})")
            mount.cut(cut.mode, 0)
            return writer.returncode
        if time.monotonic() > deadline:
            cut.violations.append(f"{cut.session_id}: no power cut within {limit:.0f} s")
            mount.cut(cut.mode, 0)
    return writer.wait()


# -- the check after a restart --------------------------------------------------------------------------


@dataclass
class CutCheck:
    """What the restart after one cut showed."""

    acknowledged: int
    kept: int | None  # the plan prefix the store holds (None: no prefix)
    model: Model | None
    corrupt: bool
    violations: list[str]


@dataclass
class _Planned:
    """What one session's log says, against its plan: the steps and the states each prefix leaves."""

    cut: Cut
    violations: list[str]
    acknowledged: int
    opened: bool
    ops: list[Op]
    prefixes: list[Model]


def _planned(cut: Cut) -> _Planned:
    session_id = cut.session_id
    violations = list(cut.violations)
    steps, opened = reported_steps(cut.log)
    if steps and not opened:
        violations.append(f"{session_id}: steps reported before the store was opened")
    ops = list(itertools.islice(plan(cut.seed, cut.largest), len(steps) + 1))
    prefixes = [Model()]
    for index, (step, op) in enumerate(zip(steps, ops, strict=False)):
        expected = [str(index), op.action, op.cell, str(op.generation), op.payload_sha256()]
        if step != expected:
            violations.append(f"{session_id}: step {index} reported as {step}, planned as {expected}")
        prefixes.append(_after(prefixes[-1], op))
    prefixes.append(_after(prefixes[-1], ops[len(steps)]))
    return _Planned(cut, violations, len(steps), opened, ops, prefixes)


def check_cut(db: Path, cut: Cut, durability: Durability) -> list[CutCheck]:
    """Check the store after the restart that follows ``cut`` (see the module docstring).

    Return one check per session the writer ran (``cut.parts()``); a corrupt
    store marks every one corrupt.
    """
    planned = [_planned(part) for part in cut.parts()]

    def corrupt(violation: str | None) -> list[CutCheck]:
        if violation is not None:
            planned[0].violations.append(violation)
        return [CutCheck(p.acknowledged, None, None, True, p.violations) for p in planned]

    if not db.exists():
        if any(p.opened for p in planned):
            return corrupt(f"{cut.session_id}: the store file is gone after the cut")
        return [CutCheck(p.acknowledged, 0, Model(), False, p.violations) for p in planned]
    check = integrity(db)
    if check != ["ok"]:
        return corrupt(f"{cut.session_id}: integrity_check says {check[:3]}")
    models: dict[str, Model] = {}
    kept: list[int] = []
    try:
        with ObservationStore.open(db) as store:
            for p in planned:
                session_id = p.cut.session_id
                found = observe(store, session_id)
                prefixes = p.prefixes
                matches = (j for j in range(len(prefixes) - 1, -1, -1) if prefixes[j].snapshot() == found)
                j = next(matches, None)
                if j is None:
                    return corrupt(
                        f"{session_id}: the store holds no prefix of the plan: {sorted(found)[:5]}"
                    )
                if j < p.acknowledged and durability == "full":
                    lost = p.acknowledged - j
                    p.violations.append(f"{session_id}: {lost} acknowledged steps lost (durability full)")
                p.violations += check_payloads(store, session_id, p.ops, found)
                _count, problems = row_problems(db, session_id)
                p.violations += problems
                models[session_id] = prefixes[j]
                kept.append(j)
            if len(planned) == 1:
                planned[0].violations += resolve_interrupted(store, cut.session_id, models[cut.session_id])
            else:
                planned[0].violations += resolve_together(store, models)
    except StoreError as exc:
        return corrupt(f"{cut.session_id}: the store does not open after the cut: {exc}")
    return [
        CutCheck(p.acknowledged, j, models[p.cut.session_id], False, p.violations)
        for p, j in zip(planned, kept, strict=True)
    ]


def _after(model: Model, op: Op) -> Model:
    following = model.copy()
    following.apply(op)
    return following


def sweep(db: Path, models: dict[str, Model], ended: list[str]) -> tuple[int, list[str]]:
    """Check every kept session still holds its model and every ended one stays gone."""
    violations = []
    with ObservationStore.open(db) as store:
        for session_id, model in models.items():
            if observe(store, session_id) != model.snapshot():
                violations.append(f"{session_id}: changed after a later cut")
        for session_id in ended:
            if store.cells(session_id):
                violations.append(f"{session_id}: ended, yet back after a later cut")
    count, problems = row_problems(db)
    return count, violations + problems


def retire(db: Path, models: dict[str, Model], ended: list[str], keep: int) -> None:
    """End the oldest sessions beyond ``keep``, so that the store stays small."""
    if len(models) <= keep:
        return
    with ObservationStore.open(db) as store:
        while len(models) > keep:
            session_id = next(iter(models))
            store.end_session(session_id)
            del models[session_id]
            ended.append(session_id)


def final_host_loop(db: Path, seed: int, steps: int, durability: Durability) -> list[str]:
    """Run ``steps`` more steps of the host loop on a new session; check the store holds them."""
    session_id = "final"
    ops = list(itertools.islice(plan(seed, LARGEST_TEXT), steps))
    model = Model()
    for op in ops:
        model.apply(op)
    with ObservationStore.open(db, durability=durability) as store:
        host_loop(store, session_id, iter(ops), lambda _line: None)
        found = observe(store, session_id)
        if found != model.snapshot():
            return [f"{session_id}: the last host loop's session is not its model"]
        return check_payloads(store, session_id, ops, found)


# -- the campaign -----------------------------------------------------------------------------------------


def run_campaign(
    cuts: int,
    *,
    durability: Durability = "full",
    mode: str = "mixed",
    seed: int = 0,
    folder: Path | None = None,
    sync_off: bool = False,
    final_steps: int = 30,
    last_operation: int = LAST_OPERATION,
    largest: int = LARGEST_TEXT,
    sessions: int = 1,
    echo: Callable[[str], None] | None = None,
) -> PowerLossReport:
    """Cut the power ``cuts`` times under host-loop writers on one store (a new one after corruption).

    Each writer runs ``sessions`` sessions at once (threads of one process, one store).
    """
    if mode not in (*CUT_MODES, "mixed"):
        raise ValueError(f"mode must be drop, torn or mixed, not {mode!r}")
    started = time.monotonic()
    report = PowerLossReport(durability=durability, synchronous_off=sync_off, sessions=sessions)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="powerloss-campaign-") as scratch:
        work = Path(folder) if folder is not None else Path(scratch)
        backing, mountpoint, logs = work / "backing", work / "mount", work / "logs"
        for folder_ in (backing, mountpoint, logs):
            folder_.mkdir(parents=True, exist_ok=True)
        db = mountpoint / DB_NAME
        models: dict[str, Model] = {}
        ended: list[str] = []
        previous: Cut | None = None
        mount = LossyMount(backing, mountpoint)
        writers = Writers()
        try:
            for run in range(cuts + 1):
                if run:
                    mount.remount()  # the restart: fresh from the backing folder alone
                try:
                    corrupt = False
                    checks = [] if previous is None else check_cut(db, previous, durability)
                    for part, checked in zip(
                        [] if previous is None else previous.parts(), checks, strict=True
                    ):
                        corrupt = _fold(report, checked, part, models) or corrupt
                    if corrupt:
                        # A broken store cannot go on: keep it aside, start a new one.
                        models, ended = _new_store(report, mount, work / f"corrupt-{report.stores}")
                    elif previous is not None:
                        if run % SWEEP_EVERY == 0 or (run % FRESH_EVERY == 0 and run < cuts):
                            rows, problems = sweep(db, models, ended)
                            report.rows_checked += rows
                            report.violations += problems
                        retire(db, models, ended, max(KEEP_SESSIONS, 2 * sessions))
                        if run % FRESH_EVERY == 0 and run < cuts:
                            # A new store now and then: creating the file is cut under too.
                            models, ended = _new_store(report, mount, None)
                    if run == cuts:
                        _finish(report, db, models, ended, seed, final_steps, durability)
                        break
                    cut_mode = mode if mode != "mixed" else CUT_MODES[run % 2]
                    fresh = not db.exists()
                    previous = cut_writer(
                        mount,
                        writers,
                        db,
                        logs,
                        run,
                        seed * 100_003 + run,
                        rng,
                        cut_mode,
                        durability,
                        sync_off,
                        fresh,
                        last_operation * sessions,
                        largest,
                        sessions,
                    )
                finally:
                    mount.unmount()
                report.cuts += 1
                report.cuts_by_mode[cut_mode] += 1
                report.cuts_on_request += previous.trigger == "request"
                report.cuts_during_startup += previous.trigger in ("startup", "creation")
                report.cuts_during_creation += previous.trigger == "creation"
                if echo is not None and (run + 1) % 10 == 0:
                    echo(
                        f"{run + 1} cuts, {report.acknowledged} acknowledged steps, {report.lost} lost, "
                        f"{report.corrupt} corrupt, {len(report.violations)} violations"
                    )
        finally:
            writers.close()
            mount.close()
    report.seconds = time.monotonic() - started
    return report


def _new_store(
    report: PowerLossReport, mount: LossyMount, aside: Path | None
) -> tuple[dict[str, Model], list[str]]:
    """Start over on an empty backing folder, the old one kept ``aside`` or deleted.

    Return the new store's sessions kept and ended: none.
    """
    mount.unmount()
    if aside is None:
        shutil.rmtree(mount.backing)
    else:
        shutil.move(mount.backing, aside)
    mount.backing.mkdir()
    mount.remount()
    report.stores += 1
    return {}, []


def _finish(
    report: PowerLossReport,
    db: Path,
    models: dict[str, Model],
    ended: list[str],
    seed: int,
    steps: int,
    durability: Durability,
) -> None:
    """Run the last host loop and check the whole store once more."""
    report.violations += final_host_loop(db, seed, steps, durability)
    report.final_steps = steps
    rows, problems = sweep(db, models, ended)
    report.rows_checked += rows
    report.violations += problems
    report.file_bytes = db.stat().st_size


def _fold(report: PowerLossReport, check: CutCheck, cut: Cut, models: dict[str, Model]) -> bool:
    """Add one cut's check to the report; return whether the store is corrupt."""
    report.acknowledged += check.acknowledged
    report.violations += check.violations
    if check.corrupt:
        report.corrupt += 1
        return True
    assert check.kept is not None and check.model is not None
    lost = max(0, check.acknowledged - check.kept)
    if lost:
        report.lost += lost
        report.cuts_with_loss += 1
        report.largest_loss = max(report.largest_loss, lost)
        report.cuts_losing_all += lost == check.acknowledged
    models[cut.session_id] = check.model
    return False


def summary(report: PowerLossReport) -> list[str]:
    """Return the report as lines for people."""
    sync = "OFF (harness switch)" if report.synchronous_off else report.durability
    return [
        f"durability:            {report.durability}, synchronous {sync}",
        f"sessions per writer:   {report.sessions} (threads of one process, sharing commits)",
        f"cuts:                  {report.cuts} "
        f"(drop {report.cuts_by_mode['drop']}, torn {report.cuts_by_mode['torn']}; "
        f"{report.cuts_on_request} on request, {report.cuts_during_startup} during start-up, "
        f"{report.cuts_during_creation} of them while creating a store)",
        f"acknowledged steps:    {report.acknowledged}",
        f"lost steps:            {report.lost} in {report.cuts_with_loss} cuts "
        f"(largest loss {report.largest_loss}; {report.cuts_losing_all} cuts lost all their writer's steps)",
        f"corrupt stores:        {report.corrupt} (stores used: {report.stores})",
        f"rows checked:          {report.rows_checked} (whole store every {SWEEP_EVERY} cuts and at the end)",
        f"last host loop:        {report.final_steps} steps",
        f"violations:            {len(report.violations)}",
        f"store file:            {report.file_bytes:,} bytes",
        f"time:                  {report.seconds:.1f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 on any violation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=100, help="how many power cuts")
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    parser.add_argument("--mode", choices=(*CUT_MODES, "mixed"), default="mixed", help="mixed: half each")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed of the plans and cuts")
    parser.add_argument(
        "--last-operation",
        type=int,
        default=LAST_OPERATION,
        help="counted cuts come at a write-type operation of the writer up to this one",
    )
    parser.add_argument(
        "--largest-text", type=int, default=LARGEST_TEXT, help="bound of a payload's text (bytes)"
    )
    parser.add_argument(
        "--sessions", type=int, default=1, help="sessions each writer runs at once (a thread each)"
    )
    parser.add_argument("--keep", type=Path, help="keep the backing folder and logs in this folder")
    parser.add_argument(
        "--synchronous-off",
        action="store_true",
        help="run the writers with PRAGMA synchronous=OFF (not a store option): the campaign must see faults",
    )
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer:
        return writer_main()
    print(
        f"power-loss campaign: {args.cuts} cuts, durability {args.durability}, "
        f"mode {args.mode}, {args.sessions} sessions per writer, seed {args.seed}",
        flush=True,
    )
    report = run_campaign(
        args.cuts,
        durability=args.durability,
        mode=args.mode,
        seed=args.seed,
        folder=args.keep,
        sync_off=args.synchronous_off,
        last_operation=args.last_operation,
        largest=args.largest_text,
        sessions=args.sessions,
        echo=lambda line: print(line, flush=True),
    )
    for violation in report.violations[:20]:
        print(f"violation: {violation}")
    for line in summary(report):
        print(line)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
