"""Durability across processes: what one process committed, another reads; kills lose nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
from scripts.crash_campaign import integrity

ROOT = Path(__file__).resolve().parent.parent

# The payload crosses a process boundary: non-ASCII text, an empty text, an image.
PAYLOAD = Outcome.completed(
    [
        TextItem("línea 1\nline 2 \u2603 \U0001f600\x00tail"),
        TextItem(""),
        ImageItem(
            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk", "low"
        ),
    ],
    error_text="Traceback: boom \u00e9",
)

WRITER = """
import json, sys
from codemode_store import ObservationStore, Outcome
url, wire = sys.argv[1], json.loads(sys.argv[2])
with ObservationStore.open(url) as store:
    s = store.session("thread-1")
    s.create_cell("cell-1")
    assert s.begin("cell-1", 0) is None
    s.record("cell-1", 0, Outcome.from_wire(wire))
"""

READER = """
import json, sys
from codemode_store import ObservationStore
with ObservationStore.open(sys.argv[1]) as store:
    obs = store.session("thread-1").get("cell-1", 0)
    print(json.dumps({"wire": obs.outcome.to_wire("cell-1"), "sha256": obs.payload_sha256,
                      "bytes": obs.payload_bytes}))
"""

# Reports each operation on stdout only after the call that committed it returned.
KILLED_WRITER = """
import sys
from codemode_store import ObservationStore, Outcome, TextItem
url, run = sys.argv[1], sys.argv[2]
store = ObservationStore.open(url)
s = store.session("run-" + run)
s.create_cell("stuck")
s.begin("stuck", 0)  # never recorded: the kill interrupts it for sure
print("ready", flush=True)
i = 0
while True:
    cell = f"c{i}"
    s.create_cell(cell)
    s.begin(cell, 0)
    s.record(cell, 0, Outcome.yielded([TextItem(f"{run}/{cell}/0 " * (i % 50 + 1))]))
    print("yielded", cell, flush=True)
    s.begin(cell, 1)
    s.record(cell, 1, Outcome.completed([TextItem(f"{run}/{cell}/1 " * (i % 7 + 1))]))
    print("completed", cell, flush=True)
    i += 1
"""


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout first on its path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_child(code: str, *args: str) -> str:
    """Run a small script in a new interpreter and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_payload_recorded_by_one_process_is_read_back_by_another(store_url: str) -> None:
    wire = PAYLOAD.to_wire("cell-1")
    run_child(WRITER, store_url, json.dumps(wire))
    read = json.loads(run_child(READER, store_url))
    assert read["wire"] == wire
    with ObservationStore.open(store_url) as store:
        obs = store.session("thread-1").get("cell-1", 0)
        assert obs is not None
        assert obs.state == "retained" and obs.outcome == PAYLOAD
        assert Outcome.from_wire(read["wire"]) == PAYLOAD
        assert (read["sha256"], read["bytes"]) == (obs.payload_sha256, obs.payload_bytes)


def expected_text(run: str, cell: str, generation: int) -> str:
    """Return the text the killed writer records for one generation (see KILLED_WRITER)."""
    i = int(cell[1:])
    repeat = i % 50 + 1 if generation == 0 else i % 7 + 1
    return f"{run}/{cell}/{generation} " * repeat


def kill_at_random(path: Path, run: str, rng: random.Random) -> list[tuple[str, str]]:
    """Start the writer, kill it with SIGKILL at a random moment, return what it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), run],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Unbuffered, so readline takes only the first line: communicate() below
        # reads the pipe itself and would never see what a buffer had read ahead.
        bufsize=0,
        env=child_env(),
        cwd=ROOT,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first == b"ready\n", child.stderr.read() if child.stderr else first
    time.sleep(rng.uniform(0.01, 0.4))
    child.send_signal(signal.SIGKILL)
    # Lines still in the pipe were written after their commit returned: they count.
    rest = child.communicate(timeout=30)[0].decode()
    assert child.returncode == -signal.SIGKILL
    # A line the kill cut short was never fully reported: only whole lines count.
    whole = [line.split() for line in rest.split("\n")[:-1]]
    assert all(len(fields) == 2 for fields in whole), rest
    return [(kind, cell) for kind, cell in whole]


@pytest.mark.slow
def test_a_killed_writer_loses_nothing_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ObservationStore.open(path).close()
    rng = random.Random(os.getpid())
    reported: dict[str, list[tuple[str, str]]] = {}
    for kill in range(6):
        run = str(kill)
        reported[run] = kill_at_random(path, run, rng)
        assert integrity(path) == ["ok"]

    assert sum(len(ops) for ops in reported.values()) > 0
    with ObservationStore.open(path) as store:
        for run, ops in reported.items():
            s = store.session("run-" + run)
            for kind, cell in ops:
                history = s.history(cell)
                if kind == "yielded":
                    zero = history[0]
                    # Either still retained as recorded, or acknowledged by a begin(1)
                    # that committed before the kill but was not reported.
                    if zero.state == "retained":
                        assert zero.outcome == Outcome.yielded([TextItem(expected_text(run, cell, 0))])
                    else:
                        assert zero.state == "released" and len(history) == 2
                else:
                    assert [o.state for o in history] == ["released", "retained"]
                    assert history[1].outcome == Outcome.completed([TextItem(expected_text(run, cell, 1))])
        interrupted = store.pending()
        stuck = [o for o in interrupted if o.cell_id == "stuck"]
        assert len(stuck) == len(reported)
        assert store.fail_pending("host restarted") == len(interrupted)
        assert store.pending() == []
        replay = store.session("run-0").begin("stuck", 0)
        assert replay is not None and replay.state == "failed" and replay.error_text == "host restarted"
    assert integrity(path) == ["ok"]
