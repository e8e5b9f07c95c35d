"""``codemode_store.host``: the wire-level Host with the command runtime, in process, on every backend.

The reference host as a process (``python -m codemode_store.host``) is tested
at the end; the crash test that drives it like Core is ``test_host_e2e.py``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codemode_store import ObservationStore, Outcome
from codemode_store.host import OBSERVATION_FAILED, RESTART_TEXT, CommandRuntime, Host, serve
from codemode_store.host.server import MAX_YIELD_TIME_MS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runtime() -> Iterator[CommandRuntime]:
    with CommandRuntime() as opened:
        yield opened


@pytest.fixture
def host(store: ObservationStore, runtime: CommandRuntime) -> Host:
    started = Host(store, runtime, "core")
    assert started.start() == 0
    return started


def ask(host: Host, op: str, **fields: Any) -> Any:
    """Send one request; return its ``ok`` value, or fail the test with the error."""
    answer = host.handle({"id": 7, "op": op, **fields})
    assert answer["id"] == 7
    assert "error" not in answer, answer
    return answer["ok"]


def refused(host: Host, op: str, **fields: Any) -> dict[str, str]:
    """Send one request that must be refused; return the error object."""
    answer = host.handle({"id": "x", "op": op, **fields})
    assert set(answer) == {"id", "error"}, answer
    assert answer["id"] == "x"
    return dict(answer["error"])


def until_finished(host: Host, cell: str, first: int = 0, yield_time_ms: int = 100) -> tuple[list[Any], int]:
    """Observe ``cell`` from ``first`` until an answer closes it; return the answers and last generation."""
    answers = []
    for generation in range(first, first + 500):
        answer = ask(host, "observe", cell_id=cell, generation=generation, yield_time_ms=yield_time_ms)
        answers.append(answer)
        if answer["type"] != "yielded":
            return answers, generation
    raise AssertionError(f"cell {cell} did not finish: {answers[-3:]}")


def text_of(answers: list[Any]) -> str:
    return "".join(item["text"] for answer in answers for item in answer.get("content_items", []))


# -- create and observe -------------------------------------------------------------------------


def test_each_observe_gets_the_output_since_the_previous_one_then_completed(
    host: Host, store: ObservationStore, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    source = f"echo a; while [ ! -e {gate} ]; do sleep 0.01; done; echo b; printf 'ü'; exit 3"
    assert ask(host, "create", cell_id="c", source=source) == {"cell_id": "c"}

    held, g = [], 0
    while "a" not in text_of(held):  # the command waits at the gate: every answer is yielded
        held.append(ask(host, "observe", cell_id="c", generation=g, yield_time_ms=50))
        assert held[-1]["type"] == "yielded"
        g += 1
    gate.touch()
    rest, last = until_finished(host, "c", first=g)

    assert text_of(held + rest) == "a\nb\nü"
    assert rest[-1] == {
        "type": "completed",
        "cell_id": "c",
        "content_items": rest[-1]["content_items"],
        "error_text": "exit status 3",
    }
    # The answer is the stored outcome, exactly as to_wire gives it.
    observation = store.session("core").get("c", last)
    assert observation is not None and observation.outcome is not None
    assert observation.outcome.to_wire("c") == rest[-1]
    assert store.session("core").cells()[0].closed


def test_a_replay_is_the_same_answer_and_a_different_request_is_a_conflict(host: Host) -> None:
    ask(host, "create", cell_id="c", source="echo once")
    answers, last = until_finished(host, "c")
    again = ask(host, "observe", cell_id="c", generation=last, yield_time_ms=100)

    assert again == answers[-1]
    error = refused(host, "observe", cell_id="c", generation=last, yield_time_ms=101)
    assert error["code"] == "GenerationConflict"
    assert "yield_time_ms" in error["message"] and "'c'" in error["message"]


def test_a_retried_create_is_a_duplicate_and_starts_nothing(host: Host, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    ask(host, "create", cell_id="c", source=f"echo started >> {marks}")

    assert refused(host, "create", cell_id="c", source=f"echo started >> {marks}")["code"] == "DuplicateCell"
    until_finished(host, "c")
    assert marks.read_text() == "started\n"


# -- terminate, close, release ----------------------------------------------------------------------


def test_observe_with_terminate_kills_the_command_and_gives_terminated(
    host: Host, store: ObservationStore, tmp_path: Path
) -> None:
    ask(host, "create", cell_id="c", source="echo first; exec sleep 30")
    answers: list[Any] = []
    while "first" not in text_of(answers):
        answers.append(ask(host, "observe", cell_id="c", generation=len(answers), yield_time_ms=50))

    stopped = ask(host, "observe", cell_id="c", generation=len(answers), yield_time_ms=50, terminate=True)

    assert stopped == {"type": "terminated", "cell_id": "c", "content_items": []}
    assert refused(host, "observe", cell_id="c", generation=len(answers) + 1)["code"] == "CellClosed"
    assert ask(host, "release", cell_id="c", generation=len(answers)) == {"released": True}
    assert ask(host, "release", cell_id="c", generation=len(answers)) == {"released": False}


def test_close_stops_the_cell_and_its_trailing_yield_is_releasable(
    host: Host, store: ObservationStore
) -> None:
    ask(host, "create", cell_id="c", source="exec sleep 30")
    assert ask(host, "observe", cell_id="c", generation=0, yield_time_ms=10)["type"] == "yielded"
    assert refused(host, "release", cell_id="c", generation=0)["code"] == "NotReleasable"

    assert ask(host, "close", cell_id="c") == {"closed": "c"}
    assert ask(host, "close", cell_id="c") == {"closed": "c"}  # a retried close changes nothing

    assert ask(host, "release", cell_id="c", generation=0) == {"released": True}
    assert [o.state for o in store.session("core").history("c")] == ["released"]


def test_a_release_for_a_cell_the_host_never_saw_is_an_error(host: Host) -> None:
    error = refused(host, "release", cell_id="never-seen", generation=0)
    assert error["code"] == "UnknownCell"
    assert "never-seen" in error["message"]
    assert refused(host, "close", cell_id="never-seen")["code"] == "UnknownCell"
    assert refused(host, "observe", cell_id="never-seen", generation=0)["code"] == "UnknownCell"


# -- failures and restarts ---------------------------------------------------------------------------


class BrokenRuntime(CommandRuntime):
    """A command runtime whose observe fails."""

    def observe(self, cell_id: str, yield_time_ms: int) -> Outcome:
        raise OSError(f"lost the pipe of {cell_id}")


def test_a_runtime_failure_is_a_failed_generation_that_replays(store: ObservationStore) -> None:
    with BrokenRuntime() as runtime:
        host = Host(store, runtime, "core")
        ask(host, "create", cell_id="c", source="true")
        first = refused(host, "observe", cell_id="c", generation=0)
        again = refused(host, "observe", cell_id="c", generation=0)

    assert first == again == {"code": OBSERVATION_FAILED, "message": "OSError: lost the pipe of c"}
    assert store.pending() == []


def test_after_a_restart_the_interrupted_generation_fails_and_lost_cells_are_missing(
    store: ObservationStore,
) -> None:
    s = store.session("core")
    with CommandRuntime() as runtime:
        ask(Host(store, runtime, "core"), "create", cell_id="c", source="exec sleep 30")
        s.begin("c", 0)  # the previous host was killed while it ran generation 0

    with CommandRuntime() as runtime:
        host = Host(store, runtime, "core")
        assert host.start() == 1
        assert refused(host, "observe", cell_id="c", generation=0) == {
            "code": OBSERVATION_FAILED,
            "message": RESTART_TEXT,
        }
        assert ask(host, "observe", cell_id="c", generation=1) == {"type": "missing", "cell_id": "c"}


# -- bad requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"op": "launch", "cell_id": "c"}, "unknown op"),
        ({"cell_id": "c"}, "unknown op"),
        ({"op": "observe", "cell_id": "c"}, "lacks generation"),
        ({"op": "observe", "cell_id": "c", "generation": 0, "max_tokens": 5}, "unknown fields 'max_tokens'"),
        ({"op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": "5"}, "integer"),
        ({"op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": True}, "integer"),
        (
            {"op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": MAX_YIELD_TIME_MS + 1},
            "within",
        ),
        ({"op": "observe", "cell_id": "c", "generation": 0, "terminate": 1}, "true or false"),
        ({"op": "observe", "cell_id": "c", "generation": 1.0}, "generation must be an integer"),
        ({"op": "observe", "cell_id": "c", "generation": -1}, "out of range"),
        ({"op": "create", "cell_id": "", "source": "true"}, "must not be empty"),
        ({"op": "create", "cell_id": "d", "source": ["true"]}, "source must be a string"),
        ({"op": "release", "cell_id": 5, "generation": 0}, "cell_id must be a string"),
    ],
)
def test_a_malformed_request_is_invalid_input_and_changes_nothing(
    host: Host, store: ObservationStore, request_: dict[str, Any], words: str
) -> None:
    ask(host, "create", cell_id="c", source="exec sleep 30")
    before = store.cells()

    error = host.handle({"id": 1, **request_})["error"]

    assert error["code"] == "InvalidInput"
    assert words in error["message"]
    assert store.cells() == before
    assert store.session("core").history("c") == []


def test_serve_answers_each_line_and_a_line_that_is_not_json_too(host: Host) -> None:
    requests = [
        b'{"id": 1, "op": "create", "cell_id": "c", "source": "printf hi"}\n',
        b"\n",
        b"not json\n",
        b"[1, 2]\n",
        b'{"id": 2, "op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": 5000}\n',
    ]
    out = io.BytesIO()

    assert serve(host, requests, out) == 4
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0] == {"id": 1, "ok": {"cell_id": "c"}}
    assert [a["error"]["code"] for a in answers[1:3]] == ["InvalidInput", "InvalidInput"]
    assert answers[1]["id"] is None and "not a JSON object" in answers[1]["error"]["message"]
    assert answers[3]["id"] == 2
    assert answers[3]["ok"]["type"] in ("yielded", "completed")


# -- the reference host as a process -----------------------------------------------------------------


def run_reference_host(db: Path, *lines: str, audit: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "codemode_store.host", "--db", str(db), "--session", "t"]
    if audit is not None:
        command += ["--audit", str(audit)]
    return subprocess.run(
        command,
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_the_reference_host_speaks_json_lines(tmp_path: Path) -> None:
    db, audit = tmp_path / "host.db", tmp_path / "runs"
    lines = [
        '{"id": 1, "op": "create", "cell_id": "c", "source": "echo hello; exit 2"}',
        '{"id": 2, "op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": 10000}',
        '{"id": 3, "op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": 10000}',
        '{"id": 4, "op": "release", "cell_id": "c", "generation": 0}',
        '{"id": 5, "op": "release", "cell_id": "nobody", "generation": 0}',
    ]

    done = run_reference_host(db, *lines, audit=audit)

    assert done.returncode == 0, done.stderr
    completed = {
        "type": "completed",
        "cell_id": "c",
        "content_items": [{"type": "input_text", "text": "hello\n"}],
    }
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"id": 1, "ok": {"cell_id": "c"}},
        {"id": 2, "ok": {**completed, "error_text": "exit status 2"}},
        {"id": 3, "ok": {**completed, "error_text": "exit status 2"}},
        {"id": 4, "ok": {"released": True}},
        {
            "id": 5,
            "error": {
                "code": "UnknownCell",
                "message": "session 't', cell 'nobody', generation 0: the session does not know this cell",
            },
        },
    ]
    host = f"host {socket.gethostname()!r} incarnation 1"
    assert done.stderr == f"host ready: {host}, session 't', 0 interrupted generation(s) failed\n"
    cell, generation, host_pid, command_pid = audit.read_text().split()
    assert (cell, generation) == ("c", "0")  # the replay ran nothing: one line
    assert host_pid.startswith("host_pid=") and command_pid.startswith("command_pid=")
    # Both named, and not the same process: the host's, and the command's it started.
    assert int(host_pid.removeprefix("host_pid=")) != int(command_pid.removeprefix("command_pid="))


def test_the_reference_host_reports_a_store_error_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"not a database " * 100)

    done = run_reference_host(db)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: database {db} (--db): ") and len(done.stderr.splitlines()) == 1


def test_ctrl_c_during_an_observe_fails_the_generation_as_cancelled(tmp_path: Path) -> None:
    db, audit = tmp_path / "host.db", tmp_path / "runs"
    command = [sys.executable, "-m", "codemode_store.host", "--db", str(db), "--audit", str(audit)]
    host = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        # Only for a host that does not exit: SIGABRT then prints its threads' stacks.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        assert host.stdin is not None and host.stdout is not None
        # The command and the observe outlast any slow exit: the interrupt, not
        # their end, must be what ends the generation (the host kills the command).
        host.stdin.write(b'{"id": 1, "op": "create", "cell_id": "c", "source": "exec sleep 600"}\n')
        host.stdin.write(
            b'{"id": 2, "op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": 600000}\n'
        )
        host.stdin.flush()
        assert json.loads(host.stdout.readline()) == {"id": 1, "ok": {"cell_id": "c"}}
        deadline = time.monotonic() + 60
        while not (audit.exists() and audit.read_text()):  # generation 0 is running
            assert time.monotonic() < deadline
            time.sleep(0.01)

        host.send_signal(signal.SIGINT)
        # Generous: under load (fsyncs of other processes) the host's exit, which
        # commits the failure and ends its command, can take many seconds.
        try:
            _out, err = host.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(_stuck(host))
    finally:
        _reap(host)

    assert host.returncode == 130, err
    with ObservationStore.open(db) as store:
        assert store.pending() == []
        failed = store.session("default").get("c", 0)
    assert failed is not None and (failed.state, failed.error_text) == ("failed", "cancelled")


def _stuck(host: subprocess.Popen[bytes]) -> str:
    """Say how a host that did not exit after SIGINT stood: its signal masks, its threads' stacks."""
    status = Path(f"/proc/{host.pid}/status")
    masks = (
        [line for line in status.read_text().splitlines() if line.startswith("Sig")]
        if status.exists()
        else []
    )
    host.send_signal(signal.SIGABRT)
    _out, err = host.communicate(timeout=60)
    return f"the host did not exit after SIGINT; {masks}\n{err.decode(errors='replace')}"


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Kill a process the test is done with (or failed with) and close its pipes.

    A failed test must not leave it running: its pipes and its ``Popen`` would be
    reported (``ResourceWarning``) against whichever later test collects them.
    """
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_a_command_does_not_outlive_a_host_killed_with_sigkill(tmp_path: Path) -> None:
    # The command would write its file after a sleep: the host's death must stop it first.
    db, audit, written = tmp_path / "host.db", tmp_path / "runs", tmp_path / "side-effect"
    source = f"echo begin; sleep 2; echo end > {written}"
    command = [sys.executable, "-m", "codemode_store.host", "--db", str(db), "--audit", str(audit)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    ) as host:
        assert host.stdin is not None and host.stdout is not None
        create = {"id": 1, "op": "create", "cell_id": "c", "source": source}
        host.stdin.write(json.dumps(create).encode() + b"\n")
        host.stdin.write(
            b'{"id": 2, "op": "observe", "cell_id": "c", "generation": 0, "yield_time_ms": 100}\n'
        )
        host.stdin.flush()
        assert json.loads(host.stdout.readline())["ok"] == {"cell_id": "c"}
        assert json.loads(host.stdout.readline())["ok"]["type"] == "yielded"  # the command is running
        group = int(audit.read_text().split()[3].removeprefix("command_pid="))

        host.kill()  # SIGKILL: the host stops nothing itself
        host.wait(timeout=30)

    deadline = time.monotonic() + 10
    while _group_alive(group):
        assert time.monotonic() < deadline, "the command outlived its host"
        time.sleep(0.02)
    time.sleep(2.5)  # past the command's sleep: it would have written by now
    assert not written.exists()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
