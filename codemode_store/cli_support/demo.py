"""The demo: a code-mode host's session played end to end, explained for newcomers.

:func:`run_demo` plays both Core and the host against a fresh SQLite file. The
host that crashes is a real child process (``python -m codemode_store.cli_support.demo
child DB SESSION``), killed with SIGKILL in the middle of an observation; the
demo then plays the restarted host. Every fact it prints is read back from the
store, not written in advance.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import codemode_store

from ..engine import directory_given
from ..errors import AlreadyReleased
from ..observation import Observation
from ..store import ObservationStore, StoreSession
from ..wire import ImageItem, Outcome, TextItem, encode_payload
from . import display, inspection
from .errors import DemoFailed

__all__ = ["DEFAULT_DEMO_DB", "SESSION", "DemoFailed", "DemoResult", "chart_outcome", "run_demo"]

DEFAULT_DEMO_DB = "codemode-store-demo.db"
#: The store the other commands open when neither --db nor CODEMODE_STORE_URL names one.
DEFAULT_DB = "codemode-store.db"
SESSION = "demo-thread"

#: What the restarted host says about the generation its predecessor never finished.
INTERRUPTED = "the host process was killed before this observation produced a result"

#: Seconds the demo waits for its child host before giving up on it.
CHILD_TIMEOUT = 60.0

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoResult:
    """The facts the demo established, read back from its database."""

    path: Path
    recorded_sha256: str
    replayed_sha256: str
    interrupted_generation: int
    retained: int
    tombstones: int


# -- what the cells print ---------------------------------------------------------------------


def _png(width: int = 24, height: int = 16) -> bytes:
    """Return a small real PNG (a colour gradient), so the image has true bytes to count."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type of the scanline: none
        for x in range(width):
            rows.extend((x * 255 // width, y * 255 // height, 160))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def chart_outcome() -> Outcome:
    """Return the outcome of the demo's "chart" cell: a line of text and a PNG."""
    data_url = "data:image/png;base64," + base64.b64encode(_png()).decode("ascii")
    return Outcome.completed([TextItem("sales by month: 3 bars drawn"), ImageItem(data_url, "high")])


def _sha256(outcome: Outcome) -> str:
    return hashlib.sha256(encode_payload(outcome)).hexdigest()


# -- the child host process ------------------------------------------------------------------


def _child(db: str, session_id: str) -> int:
    """Serve two cells as a host, then hang mid-observation until killed."""
    store = ObservationStore.open(db)
    s = store.session(session_id)

    def recorded(cell: str, generation: int, outcome: Outcome) -> None:
        s.record(cell, generation, outcome)
        size = len(encode_payload(outcome))
        print(f"recorded {cell} {generation} {outcome.kind} {size} {_sha256(outcome)}", flush=True)

    s.create_cell("chart")
    s.begin("chart", 0)
    recorded("chart", 0, chart_outcome())
    s.create_cell("train")
    for generation, text in enumerate(["epoch 1/3: loss 0.91", "epoch 2/3: loss 0.55"]):
        s.begin("train", generation)
        recorded("train", generation, Outcome.yielded([TextItem(text)]))
    s.begin("train", 2)
    print("pending train 2", flush=True)
    time.sleep(CHILD_TIMEOUT)  # "computing epoch 3": the demo kills the process here
    return 3


def _child_environment() -> dict[str, str]:
    # The child must import this very copy of the package (a source checkout
    # may differ from what is installed), so put its folder first on the path.
    root = str(Path(codemode_store.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass(frozen=True, slots=True)
class _Crash:
    pid: int
    recorded: dict[tuple[str, int], str]  # (cell, generation) -> sha256 the host reported
    signal_text: str


def _run_and_kill_child(path: Path, echo: Echo) -> _Crash:
    command = [sys.executable, "-m", "codemode_store.cli_support.demo", "child", str(path), SESSION]
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_environment()
    )
    watchdog = threading.Timer(CHILD_TIMEOUT, proc.kill)
    watchdog.start()
    recorded: dict[tuple[str, int], str] = {}
    reached_pending = False
    try:
        assert proc.stdout is not None
        echo(f"  host process {proc.pid} started")
        for line in proc.stdout:
            words = line.split()
            if words[:1] == ["recorded"]:
                cell, generation, kind, size, sha = words[1:6]
                recorded[(cell, int(generation))] = sha
                echo(f"  host {proc.pid}: recorded {cell} generation {generation} ({kind}, {size} bytes)")
            elif words[:1] == ["pending"]:
                echo(f"  host {proc.pid}: began {words[1]} generation {words[2]}, now computing it ...")
                reached_pending = True
                break
        proc.kill()  # SIGKILL on POSIX: no clean-up code of the host runs
    finally:
        watchdog.cancel()
        _out, err = proc.communicate()
    if not reached_pending:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise DemoFailed(f"the demo's host process exited early: {last}")
    signal_text = "SIGKILL" if proc.returncode == -9 else f"exit status {proc.returncode}"
    echo(f"  ... and the host process {proc.pid} is killed ({signal_text}) mid-observation.")
    return _Crash(proc.pid, recorded, signal_text)


# -- a fresh database file ----------------------------------------------------------------------


def _is_replaceable(path: Path) -> bool:
    """Tell whether ``path`` is empty or a store holding only the demo's session."""
    if path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables <= {"cells", "observations", "hosts", "alembic_version"}:
            return False
        if "hosts" in tables and conn.execute("SELECT 1 FROM hosts").fetchone() is not None:
            return False  # a host with an id used it: never the demo's
        if "cells" not in tables:
            return True
        sessions = {row[0] for row in conn.execute("SELECT DISTINCT session_id FROM cells")}
        return sessions <= {SESSION}
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def _check_folder(path: Path) -> None:
    """Refuse, before anything is printed, a path whose folder cannot take the database."""
    if path.is_dir():
        raise DemoFailed(directory_given(str(path)))
    folder = path.absolute().parent
    if not folder.is_dir():
        raise DemoFailed(f"cannot write the demo's database {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DemoFailed(f"cannot write the demo's database {path}: the folder {folder} is not writable")


def _start_fresh(path: Path) -> None:
    if path.exists():
        if not _is_replaceable(path):
            raise DemoFailed(
                f"{path} holds data other than a previous demo's; the demo starts from an empty "
                "file and will not delete it: choose another file with --db"
            )
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the story ----------------------------------------------------------------------------------

_STEPS = 6


def _screen(echo: Echo, number: int, title: str, text: str) -> None:
    echo("")
    echo(f"=== Step {number} of {_STEPS}: {title} ===")
    echo(text.strip("\n"))


def _history(s: StoreSession, cells: Sequence[str]) -> list[Observation]:
    return [o for cell in cells for o in s.history(cell)]


def _intro(echo: Echo, path: Path) -> None:
    echo(
        f"""codemode-store demo
===================
An AI agent (call it "Core") does not run code itself. It asks a separate
program, the *host*, to run small pieces of code ("cells"), then *observes*
each cell again and again: "what has it printed so far?". The answers are
numbered per cell: generation 0, 1, 2, ...

An answer can be lost on the way (a dropped connection, a host restart). So
the host keeps every answer in this store until Core confirms it has it (an
"acknowledgement"). Asked again for the same generation, the host replays the
very same answer instead of running anything twice. Once acknowledged, the
answer's content is dropped; a small "tombstone" (size, checksum, times) stays.

This demo plays both Core and the host on a fresh SQLite file: {path}"""
    )


def _step_one(echo: Echo, s: StoreSession) -> None:
    _screen(
        echo,
        1,
        "a cell prints, then finishes",
        """
Core asks the host to run cell "load", then asks for generation 0.""",
    )
    s.create_cell("load")
    started = s.begin("load", 0)
    s.record("load", 0, Outcome.yielded([TextItem("loading sales.csv ...")]))
    echo(f'  begin("load", 0) -> {started}: new, so the host runs the cell and records "yielded"')
    echo("Core got it and asks for generation 1: that proves it holds 0, so the store")
    echo("drops generation 0's content in the same step (an implicit acknowledgement).")
    s.begin("load", 1)
    finished = Outcome.completed([TextItem("3 rows, total 42.50")])
    s.record("load", 1, finished)
    echo('  begin("load", 1) -> None; the cell finishes: record "completed"')
    echo("Core's copy of generation 1 is lost on the way; it asks for generation 1 again.")
    replay = s.begin("load", 1)
    same = replay is not None and replay.outcome == finished
    echo(
        f'  begin("load", 1) -> the stored answer, {"identical" if same else "DIFFERENT"}: nothing runs twice'
    )
    dropped = s.release("load", 1)
    echo(f'Core now holds it and acknowledges it: release("load", 1) -> {dropped} (content dropped).')
    try:
        s.begin("load", 1)
        echo("  (unexpected: the released generation was replayed)")
    except AlreadyReleased:
        echo("Asked once more, the store refuses with AlreadyReleased: Core is out of step, and it")
        echo("gets neither a re-run nor anyone else's data.")
    echo("")
    echo(display.history_table(s.history("load")))


def _step_two(echo: Echo, s: StoreSession) -> None:
    _screen(
        echo,
        2,
        "a cell that is stopped",
        """
Cell "wait" prints that it is waiting; Core then tells the host to stop it.""",
    )
    s.create_cell("wait")
    s.begin("wait", 0)
    s.record("wait", 0, Outcome.yielded([TextItem("waiting for the server ...")]))
    s.begin("wait", 1)
    s.record("wait", 1, Outcome.terminated([TextItem("stopped after 30 s")]))
    echo('  generation 0: "yielded"; generation 1: "terminated", which closes the cell.')
    echo("Core has not acknowledged generation 1 yet, so the store keeps its content:")
    echo("")
    echo(display.cells_table(s.cells()))


def _step_three(echo: Echo, s: StoreSession, path: Path) -> _Crash:
    _screen(
        echo,
        3,
        "the host process crashes mid-observation",
        """
A separate host process now serves two cells: "chart" (finishes with a text
and a picture; Core has not confirmed it yet) and "train" (prints progress).
While it computes generation 2 of "train", the demo kills it outright.""",
    )
    crash = _run_and_kill_child(path, echo)
    echo("What the killed host left behind: chart's answer kept, train's generation 2 begun")
    echo("but never finished (pending):")
    echo("")
    echo(display.history_table(_history(s, ["chart", "train"]), with_cell=True))
    return crash


def _step_four(echo: Echo, path: Path, crash: _Crash) -> tuple[str, int]:
    _screen(
        echo,
        4,
        "a new host starts and replays",
        """
The host starts again (the demo plays it, opening the store anew). First, like
every host on start, it resolves what its predecessor left pending:""",
    )
    with ObservationStore.open(path) as store:
        s = store.session(SESSION)
        left = store.pending()
        failed = store.fail_pending(INTERRUPTED)
        echo(f"  pending() -> {len(left)} observation(s); fail_pending() -> {failed} marked failed")
        echo("Core never got the chart, so it asks again for generation 0:")
        replay = s.begin("chart", 0)
        assert replay is not None and replay.outcome is not None
        replayed = _sha256(replay.outcome)
        recorded = crash.recorded[("chart", 0)]
        verdict = "equal: byte for byte the same" if replayed == recorded else "DIFFERENT"
        echo(f"  sha256 recorded by the killed host {recorded[:16]}...")
        echo(f"  sha256 of the replayed answer      {replayed[:16]}...  -> {verdict}")
        echo("Core asks again for train's generation 2, the one interrupted by the kill:")
        interrupted = s.begin("train", 2)
        assert interrupted is not None
        echo(f'  begin("train", 2) -> state "{interrupted.state}", replaying its error text:')
        echo(f'    "{interrupted.error_text}"')
        echo("")
        echo(display.history_table(_history(s, ["chart", "train"]), with_cell=True))
        return replayed, interrupted.generation


def _step_five(echo: Echo, path: Path) -> list[Observation]:
    _screen(
        echo,
        5,
        "Core acknowledges; contents become tombstones",
        """
Core has stored the chart, the stopped cell's output and train's error on its
side, and acknowledges them:""",
    )
    with ObservationStore.open(path) as store:
        s = store.session(SESSION)
        echo(
            f'  release("chart", 0) -> {s.release("chart", 0)};  release("wait", 1) -> {s.release("wait", 1)}'
        )
        s.begin("train", 3)
        s.record("train", 3, Outcome.missing())
        echo('  begin("train", 3) acknowledges the failed generation 2. The new host\'s runtime')
        echo('  never knew "train" (it died with the old host), so it answers "missing".')
        echo("")
        everything = _history(s, [c.cell_id for c in s.cells()])
        echo(display.history_table(everything, with_cell=True))
        return everything


def _step_six(echo: Echo, path: Path, command: str) -> None:
    _screen(
        echo,
        6,
        "what the store holds now",
        """
Tombstones stay until the conversation ends, when the host's end_session("demo-thread")
drops every row of it; the demo keeps them so that you can look for yourself.""",
    )
    with ObservationStore.open(path) as store:
        echo("")
        echo(display.stats_text(inspection.stats(store)))
    where = Path(os.path.abspath(path))
    db = f"--db {shlex.quote(str(where))}"
    echo("")
    echo(f"The demo's database: {where}")
    echo("Look around (paste any line as it is, from any folder; without --db, commands")
    echo(f"open {DEFAULT_DB} in the current folder, or the store CODEMODE_STORE_URL names):")
    echo(f"  {command} {db} cells")
    echo(f"  {command} {db} history {SESSION} train")
    echo(f"  {command} {db} show {SESSION} load 1      # a tombstone")
    echo(f"  {command} {db} show {SESSION} train       # the last generation")
    activate = Path(shlex.split(command)[0]).with_name("activate")
    if command != "codemode-store" and activate.is_file():
        echo(f"(or activate the environment first: source {shlex.quote(str(activate))})")
    echo(f"In a web browser (open the URL it prints): {command} {db} serve{_web_extra_hint()}")


def _web_extra_hint() -> str:
    """Say how to install the page's extra, when it is missing (looked up, not imported)."""
    import importlib.util

    if all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn", "jinja2")):
        return ""
    return "  (first: pip install 'codemode-store[web]')"


def run_demo(path: Path, echo: Echo, *, command: str = "codemode-store") -> DemoResult:
    """Play the demo on a fresh SQLite file at ``path``, explaining each step through ``echo``.

    ``command`` is how the user runs ``codemode-store`` (a full path when it
    is not on PATH), for the commands printed at the end. The path is checked
    before anything is printed.
    """
    _check_folder(path)
    _start_fresh(path)
    _intro(echo, path)
    with ObservationStore.open(path) as store:
        s = store.session(SESSION)
        _step_one(echo, s)
        _step_two(echo, s)
        crash = _step_three(echo, s, path)
    replayed, interrupted = _step_four(echo, path, crash)
    everything = _step_five(echo, path)
    _step_six(echo, path, command)
    return DemoResult(
        path=path,
        recorded_sha256=crash.recorded[("chart", 0)],
        replayed_sha256=replayed,
        interrupted_generation=interrupted,
        retained=sum(o.state == "retained" for o in everything),
        tombstones=sum(o.state == "released" for o in everything),
    )


def main(argv: Sequence[str]) -> int:
    """Run the demo's child host: ``python -m codemode_store.cli_support.demo child DB SESSION``."""
    if len(argv) != 3 or argv[0] != "child":
        print("usage: python -m codemode_store.cli_support.demo child DB SESSION", file=sys.stderr)
        return 2
    return _child(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
