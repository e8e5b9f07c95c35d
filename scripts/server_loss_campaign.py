"""Server-loss campaign: crash a durable PostgreSQL server under 4 hosts; nothing acknowledged is lost.

A throwaway cluster (``start-postgres.sh start --durable``: fsync, full page
writes and synchronous commit on) serves one store. Four host processes run
the crash campaign's host loop (its seeded ``plan``), one session each, each
with one store object it never reopens. A call that fails with
``DatabaseUnavailable`` is retried until it succeeds; the retry must get the
rule's answer (``DuplicateCell`` for a create that had committed,
``ObservationInProgress`` for a begin, an idempotent ``record``, ``NotPending``
for a fail that is then read back, ``False`` from a repeated release). Each
acknowledged call is logged, outside the database, with the time it returned.

Meanwhile the server is crashed at random moments, ``pg_ctl stop -m immediate``
or SIGKILL of the postmaster, kept down a random while, and restarted. At the
end every session must be exactly what its acknowledged calls made it (the
crash campaign's model and checks), every payload re-hashes to its sha256,
``fail_pending`` resolves exactly the generations left pending, and the store
keeps working. Every call must return within busy timeout plus connect
timeout, with a typed error while the server is down: a longer call is a hang.

Usage::

    .venv/bin/python scripts/server_loss_campaign.py --kills 60 [--seed N]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a file: test this checkout, not a copy installed in the environment.
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import collections  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from codemode_store import ObservationStore, Outcome, TextItem  # noqa: E402
from codemode_store.dialects import DEFAULT_CONNECT_TIMEOUT  # noqa: E402
from codemode_store.errors import (  # noqa: E402
    DatabaseError,
    DuplicateCell,
    NotPending,
    ObservationInProgress,
)
from codemode_store.store import StoreSession  # noqa: E402
from scripts.crash_campaign import Model, Op, check_session, observe, plan  # noqa: E402
from scripts.pg_cluster import KILL_MODES, Cluster  # noqa: E402

__all__ = ["HOSTS", "ServerLossReport", "run_campaign"]

SCRIPT = Path(__file__).resolve()
HOSTS = 4
BUSY_TIMEOUT = 5.0
#: A call may take busy timeout plus connect timeout; longer is a hang.
CALL_BOUND = BUSY_TIMEOUT + DEFAULT_CONNECT_TIMEOUT
#: A host that logs nothing (no acknowledgement, no failure) for this long is hung.
SILENCE_BOUND = CALL_BOUND + 20.0
RETRY_PAUSE = 0.05
RESTART_TEXT = "host restarted: observation interrupted"


# -- a host ------------------------------------------------------------------------------------------------


def _apply(s: StoreSession, op: Op, retry: bool) -> bool:
    """Run one step; on a retry, accept the answer its own earlier commit gives (SPEC §3).

    Return True when the retry found that an earlier attempt had committed
    (its answer was lost with the connection): the rule's answer, not a second run.
    """
    g = op.generation
    if op.action == "create":
        try:
            s.create_cell(op.cell)
        except DuplicateCell:
            if not retry:
                raise
            return True
    elif op.action == "begin":
        assert g is not None
        try:
            replay = s.begin(op.cell, g, op.request)
        except ObservationInProgress:
            if not retry:
                raise
            return True
        if replay is not None:
            raise AssertionError(f"begin of a new generation replayed {replay}")
    elif op.action == "record":
        assert g is not None and op.outcome is not None
        before = s.get(op.cell, g) if retry else None
        s.record(op.cell, g, op.outcome)  # a retry of the same outcome is a no-op
        return before is not None and before.state == "retained"
    elif op.action == "fail":
        assert g is not None and op.error_text is not None
        try:
            s.fail(op.cell, g, op.error_text)
        except NotPending:
            done = s.get(op.cell, g)
            if not retry or done is None or done.state != "failed" or done.error_text != op.error_text:
                raise
            return True
    elif op.action == "release":
        assert g is not None
        # A first release drops the payload; a retry finds the tombstone its lost answer made.
        if not s.release(op.cell, g):
            if not retry:
                raise AssertionError("a first release did not drop the payload")
            return True
    else:
        s.close_cell(op.cell)
    return False


def host_main(url: str, log: str, seed: int, session_id: str, stop: str) -> None:
    """Run the plan on ``session_id`` until ``stop`` exists, retrying calls the server's loss broke.

    Log lines: ``open``; ``INDEX ACTION CELL GEN SHA256 RETURNED_AT ATTEMPTS FOUND``
    per acknowledged step (FOUND: 1 if a retry found its lost commit); ``!
    STARTED_AT SECONDS ERROR_CLASS`` per failed call.
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def failed(started: float, exc: BaseException) -> None:
        os.write(fd, f"! {started:.6f} {time.time() - started:.6f} {type(exc).__name__}\n".encode())
        time.sleep(RETRY_PAUSE)

    while True:
        started = time.time()
        try:
            store = ObservationStore.open(url, busy_timeout=BUSY_TIMEOUT)
            break
        except DatabaseError as exc:
            failed(started, exc)
    os.write(fd, b"open\n")
    s = store.session(session_id)
    for index, op in enumerate(plan(seed)):
        if os.path.exists(stop):
            break
        for attempt in itertools.count():
            started = time.time()
            try:
                found = _apply(s, op, retry=attempt > 0)
                break
            except DatabaseError as exc:
                failed(started, exc)
        step = f"{index} {op.action} {op.cell} {op.generation} {op.payload_sha256()}"
        os.write(fd, f"{step} {time.time():.6f} {attempt} {int(found)}\n".encode())
    store.close()
    os.write(fd, b"done\n")


# -- reading a host's log ------------------------------------------------------------------------------------


@dataclass
class HostLog:
    """What one host reported: acknowledged steps (with the time each returned) and failed calls."""

    steps: list[tuple[list[str], float]] = field(default_factory=list)
    found_lost_commits: int = 0
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # started, seconds, class
    opened: bool = False
    done: bool = False


def read_log(path: Path) -> HostLog:
    """Parse a host's log (whole lines only)."""
    result = HostLog()
    if not path.exists():
        return result
    for line in path.read_text().split("\n")[:-1]:
        parts = line.split(" ")
        if line == "open":
            result.opened = True
        elif line == "done":
            result.done = True
        elif parts[0] == "!":
            result.failures.append((float(parts[1]), float(parts[2]), parts[3]))
        else:
            result.steps.append((parts[:5], float(parts[5])))
            result.found_lost_commits += parts[7] == "1"
    return result


# -- the campaign ------------------------------------------------------------------------------------------


@dataclass
class ServerLossReport:
    """The figures of a campaign."""

    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    operations_verified: int = 0
    failed_calls: int = 0
    found_lost_commits: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    longest_failed_call: float = 0.0
    longest_call_while_down: float = 0.0
    failed_after_restart: int = 0
    longest_recovery: float = 0.0
    longest_restart: float = 0.0
    payloads_rehashed: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _spawn(url: str, log: Path, seed: int, session_id: str, stop: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--host", url, str(log), str(seed), session_id, str(stop)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


class _Watch:
    """Tells when a host has logged nothing for too long: a call that hangs."""

    def __init__(self, logs: list[Path]) -> None:
        self.logs = logs
        self.seen = {log: (0, time.monotonic()) for log in logs}

    def silent(self) -> list[Path]:
        now = time.monotonic()
        hung = []
        for log in self.logs:
            size = log.stat().st_size if log.exists() else 0
            last_size, since = self.seen[log]
            if size != last_size:
                self.seen[log] = (size, now)
            elif now - since > SILENCE_BOUND:
                hung.append(log)
        return hung


def _sleep_watching(seconds: float, watch: _Watch, report: ServerLossReport) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for log in watch.silent():
            message = f"{log.stem}: no call returned for {SILENCE_BOUND:.0f} s (a hang)"
            if message not in report.violations:
                report.violations.append(message)
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def run_campaign(
    kills: int,
    *,
    seed: int = 0,
    up: tuple[float, float] = (0.3, 1.5),
    down: tuple[float, float] = (0.0, 1.0),
    echo: Callable[[str], None] | None = None,
) -> ServerLossReport:
    """Crash the server ``kills`` times under ``HOSTS`` host processes; check every acknowledged call."""
    started = time.monotonic()
    rng = random.Random(seed)
    report = ServerLossReport()
    cluster = Cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="server-loss-") as scratch:
            work = Path(scratch)
            _run(cluster, work, kills, seed, rng, up, down, report, echo)
    finally:
        cluster.remove()
    report.seconds = time.monotonic() - started
    return report


def _run(
    cluster: Cluster,
    work: Path,
    kills: int,
    seed: int,
    rng: random.Random,
    up: tuple[float, float],
    down: tuple[float, float],
    report: ServerLossReport,
    echo: Callable[[str], None] | None,
) -> None:
    report.settings = cluster.settings()
    if any(value != "on" for value in report.settings.values()):
        report.violations.append(f"the server does not run durably: {report.settings}")
    ObservationStore.open(cluster.url).close()  # the schema, before the hosts race for it
    stop = work / "stop"
    sessions = [f"host-{n}" for n in range(HOSTS)]
    seeds = {session: seed * 1_000 + n for n, session in enumerate(sessions)}
    logs = {session: work / f"{session}.log" for session in sessions}
    hosts = {
        session: _spawn(cluster.url, logs[session], seeds[session], session, stop) for session in sessions
    }
    watch = _Watch(list(logs.values()))
    outages: list[tuple[float, float]] = []  # wall-clock (killed at, back at)
    try:
        _sleep_watching(1.0, watch, report)
        modes = [KILL_MODES[n % len(KILL_MODES)] for n in range(kills)]
        rng.shuffle(modes)
        for n, mode in enumerate(modes):
            _sleep_watching(rng.uniform(*up), watch, report)
            killed_at = time.time()
            cluster.kill(mode)
            report.kills[mode] += 1
            _sleep_watching(rng.uniform(*down), watch, report)
            report.longest_restart = max(report.longest_restart, cluster.restart())
            outages.append((killed_at, time.time()))
            for session, host in hosts.items():
                if host.poll() is not None:
                    report.violations.append(
                        f"{session}: the host ended ({host.returncode}) after kill {n + 1}"
                    )
            if report.violations and any("ended" in v for v in report.violations):
                break
            if echo is not None and (n + 1) % 10 == 0:
                echo(f"{n + 1} kills, {sum(report.kills.values())} done")
        _sleep_watching(1.0, watch, report)  # the hosts work on a live server once more
    finally:
        stop.touch()
        for session, host in hosts.items():
            try:
                _out, err = host.communicate(timeout=SILENCE_BOUND + 30)
            except subprocess.TimeoutExpired:
                host.kill()
                _out, err = host.communicate()
                report.violations.append(f"{session}: did not stop (a hang)")
            if host.returncode != 0:
                tail = err.decode(errors="replace").strip().splitlines()[-5:]
                report.violations.append(f"{session}: exit {host.returncode}: {tail}")
    _check(cluster, sessions, seeds, logs, outages, report)


def _check(
    cluster: Cluster,
    sessions: list[str],
    seeds: dict[str, int],
    logs: dict[str, Path],
    outages: list[tuple[float, float]],
    report: ServerLossReport,
) -> None:
    """Check every session against its acknowledged steps; gather the call figures."""
    models: dict[str, Model] = {}
    for session in sessions:
        host = read_log(logs[session])
        if not host.done:
            report.violations.append(f"{session}: the host did not finish")
        ops = list(itertools.islice(plan(seeds[session]), len(host.steps)))
        model = Model()
        for index, ((step, _returned), op) in enumerate(zip(host.steps, ops, strict=True)):
            planned = [str(index), op.action, op.cell, str(op.generation), op.payload_sha256()]
            if step != planned:
                report.violations.append(f"{session}: step {index} reported as {step}, planned as {planned}")
            model.apply(op)
        models[session] = model
        report.operations_verified += len(host.steps)
        report.found_lost_commits += host.found_lost_commits
        _call_figures(session, host, outages, report)
    with ObservationStore.open(cluster.url) as store:
        for session in sessions:
            ops = list(itertools.islice(plan(seeds[session]), len(read_log(logs[session]).steps)))
            # The hosts stopped between calls: the store is exactly the model, no step in doubt.
            report.violations += check_session(store, session, ops, models[session], models[session])
        checked = store.check()
        report.payloads_rehashed = checked.payloads
        if not checked.ok:
            report.violations.append(f"store check: {checked.to_json()}")
        expected = sum(model.fail_pending(RESTART_TEXT) for model in models.values())
        resolved = store.fail_pending(RESTART_TEXT)
        if resolved != expected:
            report.violations.append(f"fail_pending resolved {resolved}, the models had {expected} pending")
        for session in sessions:
            if observe(store, session) != models[session].snapshot():
                report.violations.append(f"{session}: after fail_pending the store is not the model")
        s = store.session("after-the-campaign")  # the store keeps working
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.completed([TextItem("still here")]))
        if not s.release("c", 0):
            report.violations.append("a release after the campaign did not drop the payload")


def _call_figures(
    session: str, host: HostLog, outages: list[tuple[float, float]], report: ServerLossReport
) -> None:
    """Count failed calls; flag any slower than the bound, or untyped as unavailable."""
    for started, seconds, error in host.failures:
        report.failed_calls += 1
        report.errors[error] += 1
        report.longest_failed_call = max(report.longest_failed_call, seconds)
        before = [outage for outage in outages if outage[0] <= started + seconds]
        if not before:
            report.violations.append(f"{session}: a call failed ({error}) before any kill")
        elif started <= before[-1][1]:  # begun before the server was back: cut by the kill, or while down
            report.longest_call_while_down = max(report.longest_call_while_down, seconds)
        else:
            report.failed_after_restart += 1
        if seconds > CALL_BOUND:
            report.violations.append(f"{session}: a call took {seconds:.1f} s > {CALL_BOUND:.0f} s (a hang)")
        if error != "DatabaseUnavailable":
            report.violations.append(f"{session}: the server's loss gave {error}, not DatabaseUnavailable")
    for _killed, back in outages:
        after = [returned for _step, returned in host.steps if returned >= back]
        if after:
            report.longest_recovery = max(report.longest_recovery, after[0] - back)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 on any loss, hang or wrong answer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60, help="how many times to crash the server (>= 50)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed of the plans and kills")
    parser.add_argument(
        "--host", nargs=5, metavar=("URL", "LOG", "SEED", "SESSION", "STOP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.host:
        url, log, host_seed, session_id, stop = args.host
        host_main(url, log, int(host_seed), session_id, stop)
        return 0
    print(f"server-loss campaign: {args.kills} kills, {HOSTS} hosts, seed {args.seed}", flush=True)
    report = run_campaign(args.kills, seed=args.seed, echo=lambda line: print(line, flush=True))
    for violation in report.violations[:20]:
        print(f"violation: {violation}")
    kills = ", ".join(f"{count} {mode}" for mode, count in sorted(report.kills.items()))
    print(f"server settings:          {report.settings}")
    print(f"kills:                    {sum(report.kills.values())} ({kills})")
    print(f"operations verified:      {report.operations_verified} acknowledged, each found as it returned")
    print(f"payloads re-hashed:       {report.payloads_rehashed}")
    print(f"failed calls (retried):   {report.failed_calls} {dict(report.errors)}")
    print(f"retries that found their lost commit: {report.found_lost_commits} (answered by the rules)")
    print(f"longest call, server down: {report.longest_call_while_down:.2f} s (bound {CALL_BOUND:.0f} s)")
    print(f"longest failed call:      {report.longest_failed_call:.2f} s")
    print(f"failed after restart:     {report.failed_after_restart} calls begun once the server was back")
    print(f"longest recovery:         {report.longest_recovery:.2f} s (restart done -> a host's next ack)")
    print(f"longest server restart:   {report.longest_restart:.2f} s")
    print(f"violations:               {len(report.violations)}")
    print(f"time:                     {report.seconds:.1f} s")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
