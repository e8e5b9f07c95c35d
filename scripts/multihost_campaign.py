"""Many hosts on one store: a simulated Core routes sessions between host processes and breaks them.

Each backend (a PostgreSQL database, and one SQLite file shared by several
processes) gets ``--hosts`` host processes (the host kit: ``codemode_store.host.Host``
over ``ObservationStore.open(db, host_id=..., lease_seconds=...)``, one per host
slot ``h0``, ``h1``, ...; each serves any session, runs ``fail_pending`` when it
starts and every half lease, and notes each generation it runs in an audit log,
synced). A simulated Core drives sessions of short shell cells through them,
writes every answer it consumes to its own log (appended, fsynced) before it
acknowledges it, and injects seeded faults:

- **kill**: SIGKILL a host at a random moment of a request, restart its slot
  with the same host id (a new incarnation);
- **zombie**: SIGSTOP a host in the middle of a request, for longer than its
  lease, route its sessions elsewhere, SIGCONT it once its generation was
  recovered by another host (or after ``MAX_PAUSE``);
- **duplicate**: start a second process with a live host's id; Core routes the
  slot to it, sends the superseded process one more request (it must be
  refused) and stops it;
- **cut** (PostgreSQL): every host reaches the server through its own
  ``benchmarks/tcp_proxy.py``; a cut drops all of one host's connections at a
  random moment of a request;
- **move**: a session whose cell is still running moves to another host.

Invariants, checked as Core goes (after every fault) and at the end:

- no generation runs twice (the audit logs of every host process; each cell's
  command appends a start mark: one per cell);
- no live host's generation is failed by another host: every ``"host H lost"``
  failure Core consumes is checked against the campaign's own record of H's
  process at that moment (running and not stopped for the last two leases and a
  margin means live: must be 0);
- every late answer of a zombie or a superseded incarnation is refused (or is
  the very answer the store holds, when nothing recovered that generation
  before it): refusals are counted and must be > 0 in every run;
- every answer Core consumed replays byte for byte from another host it asks
  (probes before the acknowledgement), and is in the store with the sha256 of
  what Core consumed; every acknowledged generation ends released;
- at the end no pending row, and nothing retained but the last, ``missing``
  generation of a lost cell.

Usage::

    .venv/bin/python scripts/multihost_campaign.py --kills 200 --zombies 50 --duplicates 20 \\
        --moves 1000 --cuts 100 [--postgres-url URL] [--seed N] [--lease 1.0] [--keep DIR]
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
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from sqlalchemy import select as sql_select  # noqa: E402

from benchmarks.tcp_proxy import TcpProxy  # noqa: E402
from codemode_store import ObservationStore  # noqa: E402
from codemode_store.errors import DatabaseBusy, DatabaseUnavailable, StoreError  # noqa: E402
from codemode_store.host import OBSERVATION_FAILED, CommandRuntime, Host  # noqa: E402
from codemode_store.schema import observations  # noqa: E402
from scripts.core_crash_campaign import CellPlan, CoreLog, answer_sha, cell_plan, stored_sha  # noqa: E402

__all__ = ["FAULTS", "BackendReport", "CampaignReport", "run_campaign"]

FAULTS = ("kill", "zombie", "duplicate", "cut", "move")
#: Answers that refuse a late or fenced write: nothing was written.
REFUSALS = frozenset(
    {"NotPending", "ObservationInProgress", "HostFenced", "AlreadyReleased", "FutureGeneration", "CellClosed"}
)
#: Errors after which Core asks again (the same request, maybe to another host).
RETRIED = frozenset({"DatabaseUnavailable", "DatabaseBusy", "ObservationInProgress"})
LOST = re.compile(r"^host (.+) lost: ")
#: How many hosts may be zombies at once (the others serve their sessions).
MAX_ZOMBIES = 2
#: The longest a zombie stays stopped, in leases plus seconds, however slow its
#: recovery (on SQLite, a zombie stopped inside a write transaction holds the
#: file's write lock: no other host can write, or recover, until it goes on).
MAX_PAUSE = (4, 4.0)
ANSWER_TIMEOUT = 30.0
#: How long Core may take to finish its cells once the faults stopped.
FINISH_SECONDS = 120.0
#: Chance that a request carries a kill or a cut while their quotas remain; that an
#: observe of a cell that runs for its whole yield time makes its host a zombie.
REQUEST_FAULT_CHANCE = 0.4
ZOMBIE_CHANCE = 1.0
#: Chances per step of a duplicate start and of a move, while their quotas remain.
DUPLICATE_CHANCE = 0.12
MOVE_CHANCE = 0.2
#: Chance that Core asks another host for an answer it consumed, before acknowledging it.
PROBE_CHANCE = 0.25
SESSIONS = 6
#: Generations Core observes of a cell that runs until it stops it (terminate or close).
OBSERVES_BEFORE_STOP = 3
#: The hosts' call_timeout (seconds).
HOST_CALL_TIMEOUT = 3.0


# -- the host process (the host kit over one store) ---------------------------------------------


def serve_host(db: str, host_id: str, lease: float, audit: Path) -> int:
    """Serve requests of any session on stdin (``session`` names it) until stdin ends."""
    # A short call_timeout: it also bounds how long a zombie stopped inside a
    # transaction holds its row locks (PostgreSQL's idle-in-transaction timeout).
    store = _open_patiently(db, host_id, lease)
    runtime = CommandRuntime()
    stopping = threading.Event()
    pid = os.getpid()

    def note(session: str) -> Any:
        def run(cell_id: str, generation: int) -> None:
            with audit.open("a", encoding="utf-8") as log:
                log.write(f"{host_id} {store.incarnation} {pid} {session} {cell_id} {generation}\n")
                log.flush()
                os.fsync(log.fileno())

        return run

    def recover() -> None:
        # As the reference host does: fail_pending at start and periodically.
        while not stopping.wait(lease / 2):
            with contextlib.suppress(StoreError):
                store.fail_pending()

    with contextlib.suppress(StoreError):  # the recovery thread tries again
        store.fail_pending()
    recovery = threading.Thread(target=recover, daemon=True)
    recovery.start()
    ready = {"ready": True, "host_id": host_id, "incarnation": store.incarnation, "pid": pid}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    hosts: dict[str, Host] = {}
    try:
        for line in sys.stdin.buffer:
            request = json.loads(line)
            session = request.pop("session")
            host = hosts.get(session)
            if host is None:
                host = hosts[session] = Host(store, runtime, session, on_run=note(session))
            answer = host.handle(request)
            if _own_lost_begin(store, host_id, session, request, answer):
                answer = host.handle(request)
            answer["incarnation"] = store.incarnation
            sys.stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    finally:
        stopping.set()
        runtime.close()
        store.close()
    return 0


def _open_patiently(db: str, host_id: str, lease: float) -> ObservationStore:
    """Open the store as ``host_id``, retrying while the database is busy or away (a zombie may hold it)."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        try:
            return ObservationStore.open(
                db, host_id=host_id, lease_seconds=lease, call_timeout=HOST_CALL_TIMEOUT
            )
        except (DatabaseBusy, DatabaseUnavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _own_lost_begin(
    store: ObservationStore, host_id: str, session: str, request: dict[str, Any], answer: dict[str, Any]
) -> bool:
    """End a generation this host began in a call whose answer was lost (a cut); tell whether it did.

    A begin that committed just before its connection was cut raised
    ``DatabaseUnavailable``; Core asks again and gets ``ObservationInProgress``
    for a row this very process left pending (it runs one request at a time).
    As docs/postgresql-failures.md says, the host resolves it: here by failing
    it, so the generation replays as that failure.
    """
    if request.get("op") != "observe" or answer.get("error", {}).get("code") != "ObservationInProgress":
        return False
    try:
        s = store.session(session)
        observation = s.get(request["cell_id"], request["generation"])
        if observation is None or observation.state != "pending" or observation.host_id != host_id:
            return False
        s.fail(request["cell_id"], request["generation"], "the store connection was lost during the begin")
    except StoreError:
        return False
    return True


# -- the host processes, seen from Core ----------------------------------------------------------


class HostDied(Exception):
    """The host process ended before it answered."""


@dataclass
class ProcRecord:
    """What the campaign knows of one host process: when it ran, when it was stopped."""

    host_id: str
    pid: int
    started: float  # time.time()
    incarnation: int | None = None
    ended: float | None = None
    stops: list[list[float]] = field(default_factory=list)  # [stopped, continued (or inf)]
    superseded: bool = False

    def live_at(self, when: float, window: float) -> bool:
        """Tell whether the process ran, unstopped, through ``[when - window, when]``."""
        if self.started > when - window or (self.ended is not None and self.ended <= when):
            return False
        return not any(stop < when and cont > when - window for stop, cont in self.stops)


class HostProc:
    """One host process: JSON lines in and out, answers matched to requests by id."""

    def __init__(self, db: str, host_id: str, lease: float, folder: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "scripts.multihost_campaign",
            "host",
            "--db",
            db,
            "--host-id",
            host_id,
            "--lease",
            str(lease),
            "--audit",
            str(folder / "audit"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with (folder / f"{host_id}.stderr").open("ab") as errors:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT, env=env
            )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._buffer = b""
        self.record = ProcRecord(host_id, self.process.pid, time.time())
        self.stale: list[dict[str, Any]] = []  # answers to requests Core gave up on
        self.stopped = False

    @property
    def alive(self) -> bool:
        return self.record.ended is None

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise HostDied from exc

    def _line(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([self._fd], [], [], remaining)[0]:
                return None  # with timeout 0: nothing to read now
            data = os.read(self._fd, 65_536)
            if not data:
                raise HostDied
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        if answer.get("ready"):
            self.record.incarnation = answer["incarnation"]
        return answer

    def receive(self, request_id: int, timeout: float = ANSWER_TIMEOUT) -> dict[str, Any] | None:
        """Return the answer to ``request_id``; keep others as stale; ``None`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self._line(max(0.0, deadline - time.monotonic()))
            if answer is None:
                return None
            if answer.get("ready"):
                continue
            if answer.get("id") == request_id:
                return answer
            self.stale.append(answer)

    def wait_ready(self, timeout: float = ANSWER_TIMEOUT) -> bool:
        """Wait for the ready line (the claim of the host id is done)."""
        deadline = time.monotonic() + timeout
        while self.record.incarnation is None:
            answer = self._line(max(0.0, deadline - time.monotonic()))
            if answer is None:
                return False
            if not answer.get("ready"):
                self.stale.append(answer)
        return True

    @property
    def ready(self) -> bool:
        """Whether the process has claimed its host id (it said so), without waiting."""
        if self.record.incarnation is None:
            with contextlib.suppress(HostDied):
                self.wait_ready(0.0)
        return self.record.incarnation is not None

    def drain(self) -> None:
        """Read whatever the process wrote so far (late answers) without waiting."""
        assert self.process.stdout is not None
        if self.process.stdout.closed:
            return
        with contextlib.suppress(HostDied):
            while (answer := self._line(0.0)) is not None:
                if not answer.get("ready"):
                    self.stale.append(answer)

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        self.stopped = True
        self.record.stops.append([time.time(), float("inf")])

    def cont(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.stopped = False
        self.record.stops[-1][1] = time.time()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        if self.stopped:
            self.cont()
        self.process.wait()
        if self.record.ended is None:
            self.record.ended = time.time()

    def release_pipes(self) -> None:
        """Close both pipes of a process that ended."""
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Close the host's input and let it end on its own (its store ends its lease)."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.drain()
        if self.record.ended is None:
            self.record.ended = time.time()
        assert self.process.stdout is not None
        self.process.stdout.close()


# -- Core ----------------------------------------------------------------------------------------


@dataclass
class BackendReport:
    """What one backend's run did and found."""

    backend: str
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    generations: int = 0
    cells: Counter[str] = field(default_factory=Counter)
    lost_failures: int = 0  # "host H lost" failures Core consumed
    restart_failures: int = 0
    live_failed: int = 0  # of those, the host was live: must be 0
    refused_late: Counter[str] = field(default_factory=Counter)  # late answers refused, by code
    late_accepted: int = 0  # late answers that were the stored answer (not recovered in time)
    probes: int = 0
    zombie_pauses: list[float] = field(default_factory=list)
    zombies_unrecovered: int = 0  # thawed before another host recovered their generation
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    fault_seconds: float = 0.0  # until every quota was met
    fault_times: dict[str, float] = field(default_factory=dict)  # when each quota was met


@dataclass
class SessionState:
    """A session as Core drives it."""

    name: str
    slot: int
    cell: CellPlan | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)  # consumed answers of the cell
    created: bool = False
    closed: bool = False
    done_cells: int = 0
    retry_at: float = 0.0


def _yield_time_ms(seed: int, plan: CellPlan, generation: int) -> int:
    """The request's yield time, drawn from its own key: a request asked again is the very same."""
    # A cell that runs until Core stops it yields after the whole yield time:
    # long enough for a zombie to be stopped in the middle of its run.
    choices = [40, 80] if plan.ending in ("terminate", "close") else [5, 10, 20, 40]
    return random.Random(f"{seed}/{plan.cell_id}/{generation}").choice(choices)


class Core:
    """One simulated Core on one backend, with its host slots."""

    def __init__(self, backend: str, db: str, folder: Path, seed: int, lease: float, hosts: int) -> None:
        self.backend = backend
        self.db = db
        self.folder = folder
        self.seed = seed
        self.lease = lease
        self.rng = random.Random(f"{seed}/{backend}")
        self.report = BackendReport(backend)
        self.log = CoreLog(folder / "core.log")
        self.proxies: list[TcpProxy] = []
        self.urls: list[str] = []
        for _ in range(hosts):
            if backend == "postgresql":
                url = make_url(db)
                proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
                self.proxies.append(proxy)
                self.urls.append(
                    url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
                )
            else:
                self.urls.append(db)
        self.slots: list[HostProc] = []
        self.records: list[ProcRecord] = []
        self.procs: list[HostProc] = []  # every process started, to be reaped at the end
        self.superseded: list[HostProc] = []
        self.duplicates: list[tuple[int, HostProc, HostProc]] = []  # slot, old, new (not ready yet)
        self.requests: dict[int, tuple[str, dict[str, Any]]] = {}  # request id -> session, request
        self.sessions = [SessionState(f"{backend[:2]}-s{n}", n % hosts) for n in range(SESSIONS)]
        self.cell_number = 0
        self.quota: Counter[str] = Counter()
        self.zombies: list[tuple[HostProc, str, str, int, float]] = []  # proc, session, cell, g, since
        self.stopping = False
        self.checker = ObservationStore.open(db)
        self.audit_seen: Counter[tuple[str, str, int]] = Counter()
        self.audit_offset = 0
        self.audit_mark = 0
        self.started = time.monotonic()
        self.fault_times: dict[str, float] = {}

    # -- the slots ---------------------------------------------------------------------------------

    def start(self, slot: int) -> HostProc:
        proc = HostProc(self.urls[slot], f"h{slot}", self.lease, self.folder)
        self.records.append(proc.record)
        self.procs.append(proc)
        return proc

    def live_slots(self, but: int | None = None) -> list[int]:
        """The slots Core may route to: started (claimed), not stopped, not being duplicated."""
        duplicated = {slot for slot, _old, _new in self.duplicates}
        return [
            n
            for n, proc in enumerate(self.slots)
            if n != but and n not in duplicated and not proc.stopped and proc.ready
        ]

    def violation(self, text_: str) -> None:
        self.report.violations.append(f"{self.backend}: {text_}")

    # -- requests ----------------------------------------------------------------------------------

    def ask(self, session: SessionState, message: dict[str, Any], fault: str | None = None) -> Any:
        """Send one request to the session's host; return its answer, or None (ask again later)."""
        self.report.requests += 1
        request_id = self.report.requests
        message = {"id": request_id, "session": session.name, **message}
        self.requests[request_id] = (session.name, message)
        proc = self.slots[session.slot]
        audit = self.folder / "audit"
        self.audit_mark = audit.stat().st_size if audit.exists() else 0
        try:
            proc.send(message)
            if fault is not None:
                self.inject(fault, session, message)
            if proc.stopped:  # the zombie: Core gives up on it and routes the session elsewhere
                self.move(session)
                return None
            answer = proc.receive(request_id)
        except HostDied:
            if self.slots[session.slot] is proc:
                self.violation(f"{proc.record.host_id} (pid {proc.record.pid}) died on its own")
                self.restart_if_dead(session.slot)
            return None
        if answer is None:
            self.violation(f"{proc.record.host_id} gave no answer to {message} within {ANSWER_TIMEOUT} s")
            self.move(session)
            return None
        return answer

    def restart_if_dead(self, slot: int) -> None:
        proc = self.slots[slot]
        if proc.process.poll() is not None:
            proc.kill()
            self.slots[slot] = self.start(slot)

    def move(self, session: SessionState) -> None:
        choices = self.live_slots(but=session.slot)
        if choices:
            session.slot = self.rng.choice(choices)

    # -- faults ------------------------------------------------------------------------------------

    def wants(self, kind: str) -> bool:
        if 0 < self.quota[kind] <= self.report.faults[kind] and kind not in self.fault_times:
            self.fault_times[kind] = round(time.monotonic() - self.started, 1)
        return not self.stopping and self.report.faults[kind] < self.quota[kind]

    def request_fault(self, session: str, slow: bool) -> str | None:
        """Draw the fault a request carries, if any; a zombie only for a request that runs a while."""
        zombie_allowed = (
            slow
            and self.wants("zombie")
            and len(self.live_slots()) > 2
            and len(self.zombies) < MAX_ZOMBIES
            and all(zombie[1] != session for zombie in self.zombies)
        )
        if zombie_allowed and self.rng.random() < ZOMBIE_CHANCE:
            return "zombie"
        if self.rng.random() >= REQUEST_FAULT_CHANCE:
            return None
        kinds = [k for k in ("kill", "cut") if self.wants(k) and (k != "cut" or self.proxies)]
        return self.rng.choice(kinds) if kinds else None

    def inject(self, kind: str, session: SessionState, message: dict[str, Any]) -> None:
        """Break the session's host while it serves ``message``."""
        proc = self.slots[session.slot]
        work = message.get("yield_time_ms", 0) / 1000
        if kind == "zombie":
            # While its cell runs: the audit line is written just before the run.
            self.wait_for_run(session.name, message["cell_id"], message["generation"])
            time.sleep(self.rng.uniform(0.0, 0.3 * work))
        else:  # at any moment of the request
            time.sleep(self.rng.uniform(0.0, work + 0.01))
        if kind == "kill":
            proc.kill()
            self.slots[session.slot] = self.start(session.slot)
        elif kind == "cut":
            self.proxies[session.slot].drop_all()
        elif kind == "zombie":
            proc.stop()
            self.zombies.append(
                (proc, session.name, message["cell_id"], message["generation"], time.monotonic())
            )
        self.report.faults[kind] += 1
        self.check_audit()

    def wait_for_run(self, session: str, cell_id: str, g: int, timeout: float = 2.0) -> None:
        """Wait until a host notes in the audit log that it runs this generation (or gave up)."""
        line = f" {session} {cell_id} {g}\n".encode()
        path = self.folder / "audit"
        deadline = time.monotonic() + timeout
        offset = self.audit_mark  # only what was written since the request was sent
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), path.open("rb") as audit:
                audit.seek(offset)
                if line in audit.read():
                    return
            time.sleep(0.001)

    def background_fault(self) -> None:
        if self.wants("move") and self.rng.random() < MOVE_CHANCE:
            running = [s for s in self.sessions if s.cell is not None and s.answers and not self._finished(s)]
            if running and len(self.live_slots()) > 1:
                self.move(self.rng.choice(running))
                self.report.faults["move"] += 1
        if self.wants("duplicate") and self.rng.random() < DUPLICATE_CHANCE:
            self.duplicate()

    def duplicate(self) -> None:
        """Start a second process with a live host's id; probe the superseded one, then stop it."""
        live = self.live_slots()
        if len(live) < 2:
            return
        slot = self.rng.choice(live)
        # Core routes nothing to the slot until the new process has claimed the id.
        self.duplicates.append((slot, self.slots[slot], self.start(slot)))
        self.report.faults["duplicate"] += 1

    def finish_duplicates(self) -> None:
        """Once a duplicate has claimed its host id: route its slot to it, probe the superseded one."""
        for entry in list(self.duplicates):
            slot, old, new = entry
            if not new.ready:
                if new.process.poll() is not None:
                    self.violation(f"a duplicate of h{slot} did not start")
                    self.duplicates.remove(entry)
                continue
            self.duplicates.remove(entry)
            self.slots[slot] = new
            old.record.superseded = True
            self.superseded.append(old)
            self.probe_superseded(old)
            self.check_audit()

    def probe_superseded(self, old: HostProc) -> None:
        """Send the superseded process one request for a generation Core has not asked yet: refused."""
        candidates = [s for s in self.sessions if s.cell is not None and s.created and not self._finished(s)]
        if not candidates:
            old.kill()
            return
        session = self.rng.choice(candidates)
        assert session.cell is not None
        g = len(session.answers)
        self.report.requests += 1
        message = {
            "id": self.report.requests,
            "session": session.name,
            "op": "observe",
            "cell_id": session.cell.cell_id,
            "generation": g,
            "yield_time_ms": _yield_time_ms(self.seed, session.cell, g),
        }
        try:
            old.send(message)
            answer = old.receive(message["id"], timeout=10.0)
        except HostDied:
            answer = None
        if answer is not None:
            code = answer.get("error", {}).get("code")
            if code == "HostFenced":
                self.report.refused_late[code] += 1
            else:
                self.violation(f"a superseded incarnation answered {answer}")
        old.kill()
        self.classify_stale(old)

    def thaw_if_due(self) -> None:
        """SIGCONT each zombie once its generation was recovered (and its lease is long over)."""
        for zombie in list(self.zombies):
            proc, session_name, cell_id, g, since = zombie
            waited = time.monotonic() - since
            if waited <= self.lease:
                continue
            recovered = self._recovered(session_name, cell_id, g)
            if recovered or waited > MAX_PAUSE[0] * self.lease + MAX_PAUSE[1] or self.stopping:
                if not recovered:
                    self.report.zombies_unrecovered += 1
                proc.cont()
                self.report.zombie_pauses.append(waited)
                self.zombies.remove(zombie)

    def _recovered(self, session_name: str, cell_id: str, g: int) -> bool:
        try:
            observation = self.checker.session(session_name).get(cell_id, g)
        except StoreError:
            return False
        return observation is None or observation.state != "pending"

    # -- late answers ------------------------------------------------------------------------------

    def classify_stale(self, proc: HostProc) -> None:
        """Judge the answers a zombie or superseded process gave to requests Core had given up on."""
        if proc.stopped:
            return
        proc.drain()
        if not (proc.record.stops or proc.record.superseded):
            proc.stale.clear()  # a live host's answer to a request Core stopped waiting for
            return
        for answer in proc.stale:
            code = answer.get("error", {}).get("code")
            if code in REFUSALS:
                self.report.refused_late[code] += 1
            elif "ok" in answer or code == OBSERVATION_FAILED:
                self._late_answer(answer)
        proc.stale.clear()

    def _late_answer(self, answer: dict[str, Any]) -> None:
        """A late answer that was not refused must be the one the store holds (nothing recovered it)."""
        session_name, message = self.requests.get(answer.get("id"), ("", {}))
        if message.get("op") != "observe":
            return
        try:
            observation = self.checker.session(session_name).get(message["cell_id"], message["generation"])
        except StoreError as exc:
            self.violation(f"checking a late answer: {exc}")
            return
        if observation is None or observation.payload_sha256 != stored_sha(answer):
            self.violation(f"a late answer that is not the stored one was given: {answer}")
        self.report.late_accepted += 1

    # -- checks ------------------------------------------------------------------------------------

    def check_audit(self) -> None:
        """No generation ran twice (the audit lines written since the last look)."""
        path = self.folder / "audit"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as audit:
            audit.seek(self.audit_offset)
            chunk = audit.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self.audit_offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            _host, _incarnation, _pid, session, cell, g = line.split()
            key = (session, cell, int(g))
            self.audit_seen[key] += 1
            if self.audit_seen[key] > 1:
                self.violation(f"{session} {cell} generation {g} ran {self.audit_seen[key]} times")

    def check_lost_failure(self, session: SessionState, g: int, answer: dict[str, Any]) -> None:
        """A "host H lost" failure: H's process must not have been live when it was failed."""
        assert session.cell is not None
        found = LOST.match(answer["error"]["message"])
        if found is None:
            return
        self.report.lost_failures += 1
        c = observations.c
        query = sql_select(c.host_id, c.incarnation, c.recorded_at).where(
            c.session_id == session.name, c.cell_id == session.cell.cell_id, c.generation == g
        )
        row = self.checker.read(lambda conn: conn.execute(query).one())
        host_id, incarnation, recorded = row
        when = recorded / 1_000_000 if isinstance(recorded, int) else recorded.timestamp()
        window = 2 * self.lease + 0.5
        owners = [r for r in self.records if r.host_id == host_id and r.incarnation == incarnation]
        if host_id != found.group(1) or not owners:
            self.violation(f"{session.name} {session.cell.cell_id} {g}: {answer} names no process of ours")
            return
        if any(record.live_at(when, window) for record in owners):
            self.report.live_failed += 1
            self.violation(f"{session.name} {session.cell.cell_id} {g}: failed while {host_id} was live")

    # -- Core's steps ------------------------------------------------------------------------------

    def _finished(self, session: SessionState) -> bool:
        last = session.answers[-1] if session.answers else None
        kind = None if last is None else last["kind"]
        return kind == "missing"

    def new_cell(self, session: SessionState) -> None:
        cell_id = f"{session.name}-c{self.cell_number}"
        session.cell = cell_plan(cell_id, self.cell_number, self.folder / "marks")
        self.cell_number += 1
        session.answers, session.created, session.closed = [], False, False

    def step(self, session: SessionState) -> None:
        """Take the next step of a session's cell; start a new cell once one ends."""
        if session.cell is None:
            if self.stopping:
                return
            self.new_cell(session)
        plan = session.cell
        assert plan is not None
        if not session.created:
            self._create(session, plan)
            return
        last = session.answers[-1] if session.answers else None
        kind = None if last is None else last["kind"]
        if kind == "missing":
            self._end_cell(session, "missing")
            return
        g = len(session.answers)
        if kind in ("completed", "terminated") or session.closed:
            self._release(session, g - 1)
            return
        if plan.ending == "close" and kind == "yielded" and g >= OBSERVES_BEFORE_STOP:
            self._close(session)
            return
        self._observe(session, g, terminate=plan.ending == "terminate" and g >= OBSERVES_BEFORE_STOP)

    def _end_cell(self, session: SessionState, ending: str) -> None:
        self.report.cells[ending] += 1
        session.cell = None
        session.done_cells += 1

    def _create(self, session: SessionState, plan: CellPlan) -> None:
        answer = self.ask(session, {"op": "create", "cell_id": plan.cell_id, "source": plan.source})
        if answer is None:
            return
        code = answer.get("error", {}).get("code")
        if code in ("DatabaseUnavailable", "DatabaseBusy"):
            return
        if code is not None and code != "DuplicateCell":  # a create asked again after a lost answer
            self.violation(f"create {plan.cell_id}: {answer}")
        self.log.commit({"session": session.name, "cell": plan.cell_id, "event": "created"})
        session.created = True

    def _observe_request(self, session: SessionState, g: int, terminate: bool) -> dict[str, Any]:
        assert session.cell is not None
        message: dict[str, Any] = {
            "op": "observe",
            "cell_id": session.cell.cell_id,
            "generation": g,
            "yield_time_ms": _yield_time_ms(self.seed, session.cell, g),
        }
        if terminate:
            message["terminate"] = True
        return message

    def _observe(self, session: SessionState, g: int, terminate: bool) -> None:
        request = self._observe_request(session, g, terminate)
        # A cell still running for the whole yield time (it runs until Core stops it).
        assert session.cell is not None
        slow = (
            request["yield_time_ms"] >= 40 and session.cell.ending in ("terminate", "close") and not terminate
        )
        answer = self.ask(session, request, self.request_fault(session.name, slow))
        if answer is None:
            return
        code = answer.get("error", {}).get("code")
        if code in RETRIED:
            session.retry_at = time.monotonic() + 0.1
            return
        if code is not None and code != OBSERVATION_FAILED:
            self.violation(f"observe {session.name} {request['cell_id']} {g}: {answer}")
            self._end_cell(session, "broken")
            return
        kind = answer["ok"]["type"] if "ok" in answer else "failed"
        if kind == "failed":
            self.check_lost_failure(session, g, answer)
            if answer["error"]["message"].startswith("host restarted"):
                self.report.restart_failures += 1
        # Core's log first (synced), then anything that acknowledges it.
        self.log.commit(
            {
                "session": session.name,
                "cell": request["cell_id"],
                "event": "answer",
                "generation": g,
                "kind": kind,
                "answer": {k: v for k, v in answer.items() if k in ("ok", "error")},
            }
        )
        session.answers.append({"kind": kind, "answer": answer})
        self.report.generations += 1
        if self.rng.random() < PROBE_CHANCE:
            self._probe(session, request, answer)

    def _probe(self, session: SessionState, request: dict[str, Any], answer: dict[str, Any]) -> None:
        """Ask another host the very request: the same bytes."""
        others = self.live_slots(but=session.slot)
        if not others:
            return
        home = session.slot
        session.slot = self.rng.choice(others)
        again = self.ask(session, request)
        session.slot = home
        if again is None or again.get("error", {}).get("code") in ("DatabaseUnavailable", "DatabaseBusy"):
            return
        self.report.probes += 1
        if answer_sha(again) != answer_sha(answer):
            self.violation(f"{session.name} {request}: another host answered {again}, Core consumed {answer}")

    def _release(self, session: SessionState, g: int) -> None:
        assert session.cell is not None
        answer = self.ask(session, {"op": "release", "cell_id": session.cell.cell_id, "generation": g})
        if answer is None:
            return
        code = answer.get("error", {}).get("code")
        if code in RETRIED:
            session.retry_at = time.monotonic() + 0.05
            return
        if code is not None:
            self.violation(f"release {session.cell.cell_id} {g}: {answer}")
        self.log.commit({"session": session.name, "cell": session.cell.cell_id, "event": "released"})
        self._end_cell(session, session.cell.ending if session.answers[-1]["kind"] != "failed" else "failed")

    def _close(self, session: SessionState) -> None:
        assert session.cell is not None
        answer = self.ask(session, {"op": "close", "cell_id": session.cell.cell_id})
        if answer is None:
            return
        code = answer.get("error", {}).get("code")
        if code in RETRIED:
            session.retry_at = time.monotonic() + 0.05
            return
        if code is not None:
            self.violation(f"close {session.cell.cell_id}: {answer}")
        self.log.commit({"session": session.name, "cell": session.cell.cell_id, "event": "closed"})
        session.closed = True

    # -- the run -----------------------------------------------------------------------------------

    def run(self, quota: Counter[str], time_limit: float) -> None:
        """Drive the sessions until every fault quota is met (or time is up), then finish and check."""
        started = self.started = time.monotonic()
        self.quota = quota
        self.slots = [self.start(n) for n in range(len(self.urls))]
        try:
            while True:
                elapsed = time.monotonic() - started
                if not self.stopping and (
                    all(self.report.faults[k] >= quota[k] for k in quota) or elapsed > time_limit
                ):
                    self.stopping = True
                    self.report.fault_seconds = elapsed
                    self.report.fault_times = dict(self.fault_times)
                if elapsed > time_limit + FINISH_SECONDS:
                    self.violation(
                        f"sessions still unfinished {FINISH_SECONDS:.0f} s after the faults stopped"
                    )
                    break
                self.thaw_if_due()
                self.finish_duplicates()
                for proc in self.slots:
                    self.classify_stale(proc)
                self.background_fault()
                now = time.monotonic()
                ready = [
                    s
                    for s in self.sessions
                    if s.retry_at <= now and (s.cell is not None or not self.stopping)
                ]
                if (
                    self.stopping
                    and all(s.cell is None for s in self.sessions)
                    and not self.zombies
                    and not self.duplicates
                ):
                    break
                live = self.live_slots()
                if not ready or not live:
                    time.sleep(0.02)
                    continue
                session = self.rng.choice(ready)
                if session.slot not in live:  # stopped, starting, or being duplicated
                    session.slot = self.rng.choice(live)
                self.step(session)
            for proc in self.slots:
                proc.close()
                self.classify_stale(proc)
        finally:
            for proc in self.procs:
                if proc.alive:
                    proc.kill()
                proc.release_pipes()
            for proxy in self.proxies:
                proxy.stop()
        self.check_audit()
        self.check_end()
        self.checker.close()
        self.report.seconds = time.monotonic() - started

    def check_end(self) -> None:
        """The store at the end: no pending row; nothing retained but a lost cell's last missing."""
        starts = Counter(line.split()[0] for line in _lines(self.folder / "marks"))
        for cell_id, count in starts.items():
            if count > 1:
                self.violation(f"{cell_id}: its command started {count} times")
        with ObservationStore.open(self.db) as store:
            pending = store.pending()
            if pending:
                self.violation(f"pending rows at the end: {pending[:5]}")
            consumed = self._consumed()
            for summary in store.cells():
                history = store.session(summary.session_id).history(summary.cell_id)
                for o in history:
                    if o.state != "released" and not (
                        o.kind == "missing" and o.generation == summary.last_generation
                    ):
                        self.violation(
                            f"{o.session_id} {o.cell_id} {o.generation}: {o.state} {o.kind} at the end"
                        )
                    entry = consumed.get((o.session_id, o.cell_id, o.generation))
                    if entry is None:
                        self.violation(
                            f"{o.session_id} {o.cell_id} {o.generation}: in the store, never consumed"
                        )
                    elif o.payload_sha256 != stored_sha(entry):
                        self.violation(f"{o.session_id} {o.cell_id} {o.generation}: not what Core consumed")

    def _consumed(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        result = {}
        for line in _lines(self.log.path):
            entry = json.loads(line)
            if entry["event"] == "answer":
                result[(entry["session"], entry["cell"], entry["generation"])] = entry["answer"]
        return result


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- the campaign --------------------------------------------------------------------------------


@dataclass
class CampaignReport:
    """Every backend's report."""

    backends: list[BackendReport]
    seconds: float

    @property
    def violations(self) -> list[str]:
        return [v for b in self.backends for v in b.violations]

    def faults(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for b in self.backends:
            total.update(b.faults)
        return total

    def refused(self) -> int:
        return sum(sum(b.refused_late.values()) for b in self.backends)


@contextlib.contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A new database on the server for the run, dropped afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"multihost_{uuid.uuid4().hex}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_campaign(
    quota: dict[str, int],
    *,
    seed: int,
    postgres_url: str | None,
    sqlite: bool = True,
    lease: float = 1.0,
    hosts: int = 4,
    folder: Path | None = None,
    time_limit: float = 3600.0,
) -> CampaignReport:
    """Run a Core per backend side by side, splitting each fault quota between them."""
    started = time.monotonic()
    backends = [name for name, on in (("postgresql", postgres_url is not None), ("sqlite", sqlite)) if on]
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="multihost-")))
        cores = []
        for number, backend in enumerate(backends):
            sub = folder / backend
            sub.mkdir(parents=True, exist_ok=True)
            if backend == "postgresql":
                assert postgres_url is not None
                db = stack.enter_context(scratch_postgres(postgres_url))
            else:
                db = str(sub / "store.db")
            share: Counter[str] = Counter()
            for kind, total in quota.items():
                if kind == "cut":
                    share[kind] = total if backend == "postgresql" else 0
                else:
                    share[kind] = total // len(backends) + (1 if number < total % len(backends) else 0)
            cores.append((Core(backend, db, sub, seed, lease, hosts), share))

        def drive(core: Core, share: Counter[str]) -> None:
            try:
                core.run(share, time_limit)
            except Exception as exc:  # a crash of the simulator itself is a finding too
                core.violation(f"the Core stopped: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=drive, args=pair) for pair in cores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report = CampaignReport([core.report for core, _ in cores], time.monotonic() - started)
    if report.refused() == 0:
        report.backends[0].violations.append("no late answer was refused: the campaign did not test fencing")
    return report


def _print(report: CampaignReport) -> None:
    for b in report.backends:
        pauses = b.zombie_pauses or [0.0]
        print(f"[{b.backend}] faults: {dict(sorted(b.faults.items()))}")
        print(
            f"[{b.backend}] requests {b.requests}, generations consumed {b.generations}, "
            f"cells {dict(b.cells)}"
        )
        print(
            f"[{b.backend}] failures consumed: {b.lost_failures} 'host H lost' "
            f"(of a live host: {b.live_failed}), "
            f"{b.restart_failures} 'host restarted'"
        )
        print(
            f"[{b.backend}] late answers refused: {sum(b.refused_late.values())} {dict(b.refused_late)}; "
            f"late answers that were the stored one: {b.late_accepted}"
        )
        print(
            f"[{b.backend}] replay probes (byte for byte, another host): {b.probes}; "
            f"zombie pauses {min(pauses):.1f}-{max(pauses):.1f} s "
            f"({b.zombies_unrecovered} thawed unrecovered); "
            f"faults done at {b.fault_seconds:.1f} s "
            f"{b.fault_times}; {b.seconds:.1f} s"
        )
    for violation in report.violations[:30]:
        print(f"violation: {violation}")
    print(f"faults in all: {dict(sorted(report.faults().items()))}")
    print(f"violations: {len(report.violations)}; time {report.seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the campaign (or, with ``host``, one host process); exit 1 on any violation."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["host"]:
        parser = argparse.ArgumentParser(prog="multihost_campaign.py host")
        parser.add_argument("--db", required=True)
        parser.add_argument("--host-id", required=True)
        parser.add_argument("--lease", type=float, required=True)
        parser.add_argument("--audit", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        return serve_host(args.db, args.host_id, args.lease, args.audit)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    for kind, default in (
        ("kills", 200),
        ("zombies", 50),
        ("duplicates", 20),
        ("moves", 1000),
        ("cuts", 100),
    ):
        parser.add_argument(
            f"--{kind}", type=int, default=default, help=f"faults of that kind (default {default})"
        )
    parser.add_argument("--postgres-url", default=os.environ.get("CODEMODE_STORE_TEST_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--lease", type=float, default=1.0, help="lease_seconds of every host (default 1)")
    parser.add_argument("--hosts", type=int, default=4, help="host processes per backend (default 4)")
    parser.add_argument("--keep", type=Path, help="keep logs and the SQLite file in this folder")
    parser.add_argument("--time-limit", type=float, default=7200.0)
    args = parser.parse_args(argv)
    quota = {
        "kill": args.kills,
        "zombie": args.zombies,
        "duplicate": args.duplicates,
        "move": args.moves,
        "cut": args.cuts if args.postgres_url else 0,
    }
    print(
        f"multihost campaign: {quota}, seed {args.seed}, lease {args.lease} s, {args.hosts} hosts", flush=True
    )
    report = run_campaign(
        quota,
        seed=args.seed,
        postgres_url=args.postgres_url or None,
        sqlite=not args.no_sqlite,
        lease=args.lease,
        hosts=args.hosts,
        folder=args.keep,
        time_limit=args.time_limit,
    )
    _print(report)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
