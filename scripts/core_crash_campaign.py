"""Core/host crash campaign: a simulated Core drives the reference host over JSON lines and kills it.

Core creates cells whose source is a short shell command, observes their
generations and writes every answer it consumes to its own log (appended and
fsynced) before it acknowledges it: by asking for the next generation, or by
``release`` for a terminal outcome (or for the trailing yield of a cell it
closed). Meanwhile it SIGKILLs the host at random moments (in the middle of a
request, between requests, while the host starts), restarts it on the same
database and asks again; and it crashes itself between receiving an answer and
committing it, restarting from its log. Each lane is one Core with its own host
and database; lanes run side by side.

What is checked, live and at the end:

- no re-run: the host's audit log (``--audit``) names each generation the
  runtime ran at most once, across every host process; each cell's command
  starts once (it appends a mark to a file outside the database);
- same bytes: every answer received for one generation has the same sha256,
  whether it came before or after a kill or a Core crash;
- a re-asked generation with another ``yield_time_ms`` is ``GenerationConflict``;
- no acknowledgement before commit: no request is ever answered
  ``AlreadyReleased``, and every released row is one Core committed;
- nothing lost: each consumed generation is in the store with the sha256 Core
  logged; a cell's consumed output is its command's output, in order, never
  twice, and whole for a cell no kill touched;
- every completed/terminated generation ends released, and the trailing yield of
  a cell Core closed; a release for a cell the host never saw is ``UnknownCell``;
- at the end: no pending row, no retained payload Core acknowledged, every row
  whole (``PRAGMA integrity_check`` on SQLite).

Usage::

    .venv/bin/python scripts/core_crash_campaign.py --kills 1000 [--lanes 2] [--seed N] [--keep DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: test this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from codemode_store import ObservationStore, Outcome  # noqa: E402
from codemode_store.host import OBSERVATION_FAILED, RESTART_TEXT  # noqa: E402
from codemode_store.wire import encode_payload  # noqa: E402
from scripts.crash_campaign import integrity, row_problems  # noqa: E402

__all__ = ["CampaignReport", "CellPlan", "Lane", "cell_plan", "run_campaign"]

SESSION = "core"
#: Chance that a request is followed by a kill of the host, at a random moment.
KILL_CHANCE = 0.2
#: Share of those kills sent the moment the request is written, so that they land
#: while the host serves it however fast the machine is; the rest come at a random
#: moment before, during or after its work.
IMMEDIATE_KILL_SHARE = 0.4
#: Chance that a restarted host is killed again while it starts.
START_KILL_CHANCE = 0.1
#: Chance that Core crashes between receiving an answer and committing it.
CORE_CRASH_CHANCE = 0.12
#: Chances, after Core committed an answer, of asking for it again before it
#: acknowledges it (same request: a replay; another yield_time_ms: a conflict).
REPLAY_PROBE_CHANCE = 0.1
CONFLICT_PROBE_CHANCE = 0.05
#: Every so many requests, a release for a cell the host never saw.
GHOST_EVERY = 25
ACTIVE_CELLS = 2
ANSWER_TIMEOUT = 60.0


# -- the cells: short commands whose whole output is known ---------------------------------------


@dataclass(frozen=True)
class CellPlan:
    """A cell Core runs: its command, its whole output, and how Core ends it."""

    cell_id: str
    source: str
    output: str
    ending: str  # "completed" | "terminate" | "close"
    error_text: str | None = None


#: The kinds of cell, taken in turn: every kind comes as often.
CELL_KINDS = ("two-lines", "exit-3", "four-lines", "terminate", "close")


def cell_plan(cell_id: str, number: int, marks: Path) -> CellPlan:
    """Return cell ``number``: its command appends ``cell pid`` to ``marks``, then prints known lines."""
    mark = f'echo "{cell_id} $$" >> {marks}; '
    kind = CELL_KINDS[number % len(CELL_KINDS)]
    if kind == "two-lines":
        source = f"echo {cell_id} a; sleep 0.01; echo {cell_id} b"
        return CellPlan(cell_id, mark + source, f"{cell_id} a\n{cell_id} b\n", "completed")
    if kind == "exit-3":
        return CellPlan(
            cell_id, mark + f"echo {cell_id} a; exit 3", f"{cell_id} a\n", "completed", "exit status 3"
        )
    if kind == "four-lines":
        lines = [f"{cell_id} {n}" for n in range(4)]
        source = mark + "; sleep 0.02; ".join(f"echo {line}" for line in lines)
        return CellPlan(cell_id, source, "".join(line + "\n" for line in lines), "completed")
    # A cell that runs until Core stops it (the sleep bounds an orphan of a killed host).
    return CellPlan(cell_id, mark + f"echo {cell_id} a; exec sleep 3", f"{cell_id} a\n", kind)


def _yield_time_ms(cell_id: str, generation: int, seed: int) -> int:
    # Drawn from the request's own key: a retry after any crash asks the very same.
    return random.Random(f"{seed}/{cell_id}/{generation}").choice([5, 10, 20, 40])


# -- Core's durable log --------------------------------------------------------------------------


@dataclass
class CellState:
    """What Core's log says of one cell."""

    created: bool = False
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)  # generation -> logged answer
    closed: bool = False
    released: bool = False

    @property
    def next_generation(self) -> int:
        return len(self.answers)

    def last(self) -> dict[str, Any] | None:
        return self.answers.get(len(self.answers) - 1)


class CoreLog:
    """Core's own durable log: one JSON line per consumed answer, fsynced before Core acts on it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def commit(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` and sync it to disk."""
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")
            log.flush()
            os.fsync(log.fileno())

    def load(self) -> dict[str, CellState]:
        """Return the state of every cell, as a Core restarting from its log sees it."""
        cells: dict[str, CellState] = {}
        if not self.path.exists():
            return cells
        for line in self.path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            state = cells.setdefault(entry["cell"], CellState())
            event = entry["event"]
            if event == "created":
                state.created = True
            elif event == "answer":
                assert entry["generation"] == state.next_generation, entry
                state.answers[entry["generation"]] = entry
            elif event == "closed":
                state.closed = True
            elif event == "released":
                state.released = True
        return cells


def answer_sha(answer: dict[str, Any]) -> str:
    """Return the sha256 of an answer's ``ok`` or ``error`` part, byte for byte as the host wrote it."""
    body = answer.get("ok", answer.get("error"))
    # The host's own encoding; json keeps the key order it read: the very bytes of the line.
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode("ascii")).hexdigest()


def stored_sha(answer: dict[str, Any]) -> str:
    """Return the sha256 the store must hold for a consumed observe answer."""
    if "ok" in answer:
        return hashlib.sha256(encode_payload(Outcome.from_wire(answer["ok"]))).hexdigest()
    return hashlib.sha256(answer["error"]["message"].encode("utf-8")).hexdigest()


# -- the host process ----------------------------------------------------------------------------


class HostDied(Exception):
    """The host process ended before it answered."""


class HostProcess:
    """The reference host as a child process, spoken to in JSON lines."""

    def __init__(self, db: str, audit: Path, stderr: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with stderr.open("ab") as errors:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "codemode_store.host",
                    "--db",
                    db,
                    "--session",
                    SESSION,
                    "--audit",
                    str(audit),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd=ROOT,
                env=env,
            )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._buffer = b""
        self.answered = 0

    def send(self, message: dict[str, Any]) -> None:
        """Write one request line; ``HostDied`` if the host is gone."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise HostDied from exc

    def receive(self) -> dict[str, Any]:
        """Read one answer line; ``HostDied`` at end of output."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._fd], [], [], remaining)[0]:
                raise TimeoutError("the host did not answer within the timeout")
            data = os.read(self._fd, 65_536)
            if not data:
                raise HostDied
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        self.answered += 1
        return answer

    def kill(self) -> None:
        """SIGKILL the host and reap it; what it wrote before it died can still be received."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def discard(self) -> None:
        """Kill the host if it still runs and close its pipes."""
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()

    def stop(self) -> None:
        """Close the host's input and wait for it to exit on its own."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.process.stdout.close()


# -- one Core ------------------------------------------------------------------------------------


@dataclass
class LaneReport:
    """What one lane did and found."""

    kills: int = 0
    kills_in_flight: int = 0  # a request was sent and its answer never came
    kills_at_start: int = 0
    core_crashes: int = 0
    requests: int = 0
    generations: int = 0
    replays_checked: int = 0  # answers to a generation asked again, compared with the first
    conflicts_checked: int = 0
    ghosts_checked: int = 0
    restart_failures: int = 0
    start_seconds: float = 0.0  # from each host's start to its first answer
    starts: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


class Lane:
    """One simulated Core with its own host process, database, log and side files."""

    def __init__(self, name: str, db: str, folder: Path, seed: int) -> None:
        self.name = name
        self.db = db
        self.folder = folder
        self.seed = seed
        self.rng = random.Random(f"{seed}/{name}/kills")
        self.log = CoreLog(folder / "core.log")
        self.audit = folder / "audit"
        self.marks = folder / "marks"
        self.stderr = folder / "host.stderr"
        self.report = LaneReport()
        self.plans: dict[str, CellPlan] = {}
        self.received: dict[tuple[str, int], str] = {}  # (cell, generation) -> sha of every answer seen
        self.sent_create: set[str] = set()
        self.host: HostProcess | None = None
        self.killing = True
        self.resent = False  # whether the last request had to be sent again to a restarted host
        self.started_at = 0.0

    def violation(self, text: str) -> None:
        self.report.violations.append(f"{self.name}: {text}")

    # -- talking to the host, through kills -------------------------------------------------------

    def _start_host(self) -> HostProcess:
        self.report.starts += 1
        host = HostProcess(self.db, self.audit, self.stderr)
        if self.killing and self.rng.random() < START_KILL_CHANCE:
            time.sleep(self.rng.uniform(0.0, 0.4))
            host.discard()
            self.report.kills += 1
            self.report.kills_at_start += 1
            host = HostProcess(self.db, self.audit, self.stderr)
        return host

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request until an answer comes, restarting the host whenever it dies."""
        self.report.requests += 1
        self.resent = False
        while True:
            if self.host is None:
                self.host = self._start_host()
                self.started_at = time.monotonic()
            host = self.host
            try:
                host.send(message)
            except HostDied:
                self.violation(f"the host died on its own (exit {host.process.poll()})")
                host.discard()
                self.host = None
                continue
            # Once the host has answered since its start, a random moment: before,
            # during or after its work on this request.
            killed = self.killing and host.answered > 0 and self.rng.random() < KILL_CHANCE
            if killed:
                if self.rng.random() >= IMMEDIATE_KILL_SHARE:
                    work = message.get("yield_time_ms", 0) / 1000 + 0.01
                    time.sleep(self.rng.uniform(0.0, 1.2 * work))
                host.kill()
                self.report.kills += 1
            try:
                answer = host.receive()
            except HostDied:
                if not killed:
                    self.violation(f"the host died on its own (exit {host.process.poll()})")
                host.discard()
                self.host = None
                self.report.kills_in_flight += 1
                self.resent = True
                continue
            if host.answered == 1:
                self.report.start_seconds += time.monotonic() - self.started_at
            if killed:  # the answer came before the kill; the host is dead all the same
                host.discard()
                self.host = None
            if answer.get("id") != message["id"]:
                self.violation(f"answer {answer} to request {message}")
            return answer

    # -- Core's steps -----------------------------------------------------------------------------

    def request_id(self) -> int:
        return self.report.requests

    def step(self, cell_id: str, state: CellState) -> bool:
        """Take the next step of one cell; return ``True`` once the cell is done."""
        plan = self.plans[cell_id]
        if not state.created:
            return self._create(plan)
        last = state.last()
        kind = None if last is None else last["kind"]
        if state.released or kind == "missing":
            self.report.endings["missing" if kind == "missing" else plan.ending] += 1
            return True
        if kind in ("completed", "terminated") or state.closed:
            return self._release(cell_id, state.next_generation - 1)
        g = state.next_generation
        if plan.ending == "close" and kind == "yielded" and g >= 1:
            return self._close(cell_id)
        terminate = plan.ending == "terminate" and g >= 1
        return self._observe(cell_id, g, terminate)

    def _create(self, plan: CellPlan) -> bool:
        already = plan.cell_id in self.sent_create
        self.sent_create.add(plan.cell_id)
        answer = self.ask(
            {"id": self.request_id(), "op": "create", "cell_id": plan.cell_id, "source": plan.source}
        )
        error = answer.get("error")
        # A create sent before (Core crashed, or the host died before answering) is a duplicate.
        if error is not None and not ((already or self.resent) and error["code"] == "DuplicateCell"):
            self.violation(f"create {plan.cell_id}: {error}")
        if not self._core_crashes():
            self.log.commit({"cell": plan.cell_id, "event": "created"})
        return False

    def _observe_request(self, cell_id: str, g: int, terminate: bool, shift: int = 0) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": self.request_id(),
            "op": "observe",
            "cell_id": cell_id,
            "generation": g,
            "yield_time_ms": _yield_time_ms(cell_id, g, self.seed) + shift,
        }
        if terminate:
            message["terminate"] = True
        return message

    def _observe(self, cell_id: str, g: int, terminate: bool) -> bool:
        answer = self.ask(self._observe_request(cell_id, g, terminate))
        if "error" in answer and answer["error"]["code"] != OBSERVATION_FAILED:
            # AlreadyReleased here would mean the host took an acknowledgement Core never sent.
            self.violation(f"observe {cell_id} {g}: {answer['error']}")
            return True
        self._received(cell_id, g, answer)
        if self._core_crashes():
            return False  # Core restarts from its log and asks for g again
        kind = answer["ok"]["type"] if "ok" in answer else "failed"
        self.log.commit({"cell": cell_id, "event": "answer", "generation": g, "kind": kind, "answer": answer})
        self.report.generations += 1
        if kind == "failed" and answer["error"]["message"] == RESTART_TEXT:
            self.report.restart_failures += 1
        self._probe(cell_id, g, terminate)
        return False

    def _probe(self, cell_id: str, g: int, terminate: bool) -> None:
        """Ask a committed, unacknowledged generation again: the same answer, or a conflict."""
        if self.rng.random() < REPLAY_PROBE_CHANCE:
            self._received(cell_id, g, self.ask(self._observe_request(cell_id, g, terminate)))
        if self.rng.random() < CONFLICT_PROBE_CHANCE:
            other = self.ask(self._observe_request(cell_id, g, terminate, shift=1))
            if other.get("error", {}).get("code") != "GenerationConflict":
                self.violation(f"observe {cell_id} {g} with another yield_time_ms: {other}")
            self.report.conflicts_checked += 1

    def _received(self, cell_id: str, g: int, answer: dict[str, Any]) -> None:
        sha, key = answer_sha(answer), (cell_id, g)
        if key not in self.received:
            self.received[key] = sha
            return
        self.report.replays_checked += 1
        if self.received[key] != sha:
            self.violation(f"{cell_id} {g}: a second answer with other bytes: {answer}")

    def _release(self, cell_id: str, g: int) -> bool:
        answer = self.ask({"id": self.request_id(), "op": "release", "cell_id": cell_id, "generation": g})
        if "error" in answer:
            self.violation(f"release {cell_id} {g}: {answer['error']}")
            return True
        if not self._core_crashes():
            self.log.commit({"cell": cell_id, "event": "released", "generation": g})
        return False

    def _close(self, cell_id: str) -> bool:
        answer = self.ask({"id": self.request_id(), "op": "close", "cell_id": cell_id})
        if "error" in answer:
            self.violation(f"close {cell_id}: {answer['error']}")
            return True
        if not self._core_crashes():
            self.log.commit({"cell": cell_id, "event": "closed"})
        return False

    def _core_crashes(self) -> bool:
        if self.killing and self.rng.random() < CORE_CRASH_CHANCE:
            self.report.core_crashes += 1
            return True
        return False

    def _ghost(self) -> None:
        ghost = f"ghost-{self.report.ghosts_checked}"
        answer = self.ask({"id": self.request_id(), "op": "release", "cell_id": ghost, "generation": 0})
        error = answer.get("error", {})
        if error.get("code") != "UnknownCell" or ghost not in error.get("message", ""):
            self.violation(f"release of a cell the host never saw: {answer}")
        self.report.ghosts_checked += 1

    # -- the run ----------------------------------------------------------------------------------

    def run(self, kills: int, deadline: float, min_cells: int = 0) -> None:
        """Drive cells until ``kills`` kills (and ``min_cells`` cells), finish every cell, check the end.

        After the last kill (or past ``deadline``), Core neither kills nor crashes.
        """
        active: list[str] = []
        done: set[str] = set()
        n = 0
        try:
            while True:
                if self.report.kills >= kills or time.monotonic() > deadline:
                    self.killing = False
                creating = self.killing or (n < min_cells and time.monotonic() <= deadline)
                while creating and len(active) < ACTIVE_CELLS:
                    cell_id = f"{self.name}-c{n}"
                    n += 1
                    self.plans[cell_id] = cell_plan(cell_id, n - 1, self.marks)
                    active.append(cell_id)
                if not active:
                    break
                if self.report.requests % GHOST_EVERY == GHOST_EVERY - 1:
                    self._ghost()
                # Core (re)reads its state from the log before each step: a crash loses the rest.
                states = self.log.load()
                cell_id = self.rng.choice(active)
                if self.step(cell_id, states.get(cell_id, CellState())):
                    active.remove(cell_id)
                    done.add(cell_id)
            if self.host is not None:
                self.host.stop()
                self.host = None
        finally:
            # A killed host's commands end on their own: the longest sleeps 3 s.
            if self.host is not None:
                self.host.discard()
        self.check_end(done)

    # -- the checks at the end --------------------------------------------------------------------

    def check_end(self, done: set[str]) -> None:
        """Check the store, the audit log and the marks against Core's log."""
        states = self.log.load()
        runs = Counter(tuple(line.split()[:2]) for line in _lines(self.audit))
        for (cell_id, g), count in runs.items():
            if count > 1:
                self.violation(f"{cell_id} generation {g} ran {count} times")
        starts = Counter(line.split()[0] for line in _lines(self.marks))
        for cell_id, count in starts.items():
            if count > 1:
                self.violation(f"{cell_id}: its command started {count} times")
        with ObservationStore.open(self.db) as store:
            if store.pending():
                self.violation(f"pending rows at the end: {store.pending()}")
            session = store.session(SESSION)
            stored_cells = {summary.cell_id: summary for summary in session.cells()}
            for cell_id, summary in stored_cells.items():
                if cell_id not in self.plans:
                    self.violation(f"the store holds cell {cell_id}, which Core never created")
                for o in session.history(cell_id):
                    # The one payload Core cannot acknowledge: a lost cell's last answer, missing.
                    if o.state != "released" and not (
                        o.kind == "missing" and o.generation == summary.last_generation
                    ):
                        self.violation(f"{cell_id} {o.generation}: {o.state} {o.kind} at the end")
            for cell_id in done:
                state = states.get(cell_id, CellState())
                if not state.created:
                    self.violation(f"{cell_id}: done but never created")
                    continue
                if cell_id not in stored_cells:
                    self.violation(f"{cell_id}: Core created it, the store does not know it")
                    continue
                self._check_cell(self.plans[cell_id], state, session.history(cell_id), runs)
        if not self.db.startswith(("postgresql", "postgres")):
            path = Path(self.db)
            if integrity(path) != ["ok"]:
                self.violation(f"integrity_check: {integrity(path)}")
            self.violation_list(row_problems(path)[1])

    def violation_list(self, problems: list[str]) -> None:
        for problem in problems:
            self.violation(problem)

    def _check_cell(self, plan: CellPlan, state: CellState, history: list[Any], runs: Counter[Any]) -> None:
        cell_id = plan.cell_id
        rows = {o.generation: o for o in history}
        if sorted(rows) != sorted(state.answers):
            self.violation(
                f"{cell_id}: store holds generations {sorted(rows)}, Core consumed {sorted(state.answers)}"
            )
            return
        last_g = len(state.answers) - 1
        for g, entry in state.answers.items():
            answer, row = entry["answer"], rows[g]
            if row.payload_sha256 != stored_sha(answer):
                self.violation(f"{cell_id} {g}: the store's sha256 is not that of the answer Core consumed")
            acknowledged = g < last_g or state.released
            if acknowledged and row.state != "released":
                self.violation(f"{cell_id} {g}: acknowledged but {row.state}")
            if not acknowledged and entry["kind"] != "missing":
                self.violation(f"{cell_id} {g}: Core's last answer {entry['kind']} was never acknowledged")
            ran = runs.get((cell_id, str(g)), 0)
            if "ok" in answer and ran != 1:
                self.violation(f"{cell_id} {g}: answered {entry['kind']} but ran {ran} times")
        kinds = [entry["kind"] for entry in state.answers.values()]
        self._check_output(plan, state, kinds)

    def _check_output(self, plan: CellPlan, state: CellState, kinds: list[str]) -> None:
        chunks = [
            item["text"]
            for entry in state.answers.values()
            for item in entry["answer"].get("ok", {}).get("content_items", [])
        ]
        position = 0
        for chunk in chunks:  # in order and never twice
            found = plan.output.find(chunk, position)
            if found < 0:
                self.violation(f"{plan.cell_id}: output {chunk!r} is not next in {plan.output!r}")
                return
            position = found + len(chunk)
        untouched = "failed" not in kinds and "missing" not in kinds
        if not untouched:
            return
        text, last = "".join(chunks), state.answers[len(kinds) - 1]["answer"]["ok"]
        if plan.ending == "completed" and (text, last["type"], last["error_text"]) != (
            plan.output,
            "completed",
            plan.error_text,
        ):
            self.violation(
                f"{plan.cell_id}: consumed {text!r} ending {last}, the command wrote {plan.output!r}"
            )
        if plan.ending == "terminate" and (text, last["type"]) != (plan.output, "terminated"):
            self.violation(f"{plan.cell_id}: consumed {text!r} ending {last}")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the campaign --------------------------------------------------------------------------------


@dataclass
class CampaignReport:
    """The sum of every lane's report."""

    lanes: list[LaneReport]
    seconds: float

    def total(self, name: str) -> int:
        return sum(int(getattr(lane, name)) for lane in self.lanes)

    @property
    def violations(self) -> list[str]:
        return [v for lane in self.lanes for v in lane.violations]

    @property
    def endings(self) -> Counter[str]:
        result: Counter[str] = Counter()
        for lane in self.lanes:
            result.update(lane.endings)
        return result


def run_campaign(
    kills: int,
    *,
    seed: int,
    folder: Path | None = None,
    lanes: int = 2,
    databases: list[str] | None = None,
    time_limit: float = 600.0,
) -> CampaignReport:
    """Run ``lanes`` Cores side by side until they killed their hosts ``kills`` times in all."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="core-crash-")))
        runners = []
        for number in range(lanes):
            lane_folder = folder / f"lane{number}"
            lane_folder.mkdir(parents=True, exist_ok=True)
            db = databases[number] if databases else str(lane_folder / "host.db")
            runners.append(Lane(f"l{number}", db, lane_folder, seed))
        share = [kills // lanes + (1 if n < kills % lanes else 0) for n in range(lanes)]
        deadline = started + time_limit

        def drive(lane: Lane, lane_kills: int) -> None:
            try:
                lane.run(lane_kills, deadline)
            except Exception as exc:  # a crash of the simulator itself is a finding too
                lane.violation(f"the lane stopped: {type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=drive, args=(lane, n)) for lane, n in zip(runners, share, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return CampaignReport([lane.report for lane in runners], time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 if any check failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000, help="host kills in all (default 1000)")
    parser.add_argument(
        "--lanes", type=int, default=2, help="Cores side by side, each with its host (default 2)"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed of cells, kills and crashes")
    parser.add_argument("--keep", type=Path, help="keep databases, logs and side files in this folder")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="stop killing after so many seconds")
    args = parser.parse_args(argv)
    print(f"core crash campaign: {args.kills} kills, {args.lanes} lanes, seed {args.seed}", flush=True)
    report = run_campaign(
        args.kills, seed=args.seed, folder=args.keep, lanes=args.lanes, time_limit=args.time_limit
    )
    for violation in report.violations[:20]:
        print(f"violation: {violation}")
    t = report.total
    print(
        f"host kills:           {t('kills')} ({t('kills_in_flight')} with a request unanswered, "
        f"{t('kills_at_start')} while starting)"
    )
    print(f"core crashes:         {t('core_crashes')} (between receiving and committing)")
    print(f"requests:             {t('requests')}")
    print(f"generations consumed: {t('generations')} ({t('restart_failures')} failed by a restart)")
    print(f"cells:                {dict(sorted(report.endings.items()))}")
    print(
        f"replays checked:      {t('replays_checked')}; conflicts {t('conflicts_checked')}; "
        f"unknown-cell releases {t('ghosts_checked')}"
    )
    print(f"violations:           {len(report.violations)}")
    starts = max(1, t("starts"))
    print(
        f"host start to answer: {sum(lane.start_seconds for lane in report.lanes) / starts:.2f} s on average"
    )
    print(f"time:                 {report.seconds:.1f} s")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
