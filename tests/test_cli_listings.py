"""Listings at scale and in the usual formats: ``sessions``, ``cells``, ``history`` (issue 11, item 15).

``--limit``, ``--format table|json|jsonl|csv|tsv`` (``--json`` = ``--format json``),
``cells --state`` and ``--closed/--open``; rows streamed as they are read; a
table wider than the terminal printed as blocks; states coloured on a terminal
only; every bad option one ``error:`` line with the database unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.tables import dump

import cli as cli_module
from cli import main
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.cli_support import display, inspection
from codemode_store.cli_support.inspection import RECORD_KEYS
from codemode_store.observation import CellSummary, Observation

ESC = "\x1b"


def run(args: list[str], code: int = 0, **kwargs: Any) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped unhandled."""
    result = CliRunner().invoke(main, args, **kwargs)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_usage_error(result: Result, *words: str) -> None:
    """Assert one ``error:`` line on stderr, exit status 2, nothing on stdout, no traceback."""
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def url(store_url: str) -> str:
    """Sessions a (cells done: retained; run: pending; bad: failed; old: released; new: no obs) and b."""
    with ObservationStore.open(store_url) as store:
        a = store.session("a")
        a.create_cell("done")
        a.begin("done", 0)
        a.record("done", 0, Outcome.completed([TextItem("result")]))
        a.create_cell("run")
        a.begin("run", 0)
        a.create_cell("bad")
        a.begin("bad", 0)
        a.fail("bad", 0, "it broke")
        a.create_cell("old")
        a.begin("old", 0)
        a.record("old", 0, Outcome.terminated([TextItem("stopped")]))
        a.release("old", 0)
        a.create_cell("new")
        b = store.session("b")
        b.create_cell("y")
        for generation in range(3):
            b.begin("y", generation)
            b.record("y", generation, Outcome.yielded([TextItem(f"part {generation}")]))
    return store_url


def api_cells(url: str, session_id: str | None = None) -> list[CellSummary]:
    """Return the API's cell summaries in the listing's order: by session id, then cell id."""
    with ObservationStore.open(url) as store:
        return sorted(store.cells(session_id), key=lambda c: (c.session_id, c.cell_id))


def api_history(url: str, session_id: str, cell_id: str) -> list[Observation]:
    with ObservationStore.open(url) as store:
        return store.session(session_id).history(cell_id)


def history_record(o: Observation) -> dict[str, Any]:
    return inspection.record(o)


# -- the formats ------------------------------------------------------------------------------------


def test_json_is_what_it_was_before_rows_streamed(url: str) -> None:
    cells = [inspection.record(c) for c in api_cells(url)]
    assert run(["--db", url, "cells", "--json"]).stdout == json.dumps(cells, indent=2) + "\n"
    assert run(["--db", url, "cells", "--format", "json"]).stdout == json.dumps(cells, indent=2) + "\n"
    with ObservationStore.open(url) as store:
        sessions = [inspection.record(s) for s in inspection.sessions(store)]
    assert run(["--db", url, "sessions", "--json"]).stdout == json.dumps(sessions, indent=2) + "\n"
    history = [history_record(o) for o in api_history(url, "b", "y")]
    assert run(["--db", url, "history", "b", "y", "--json"]).stdout == json.dumps(history, indent=2) + "\n"
    assert run(["--db", url, "cells", "--session", "nobody", "--json"]).stdout == "[]\n"


def test_the_table_is_what_it_was_before_rows_streamed(url: str) -> None:
    assert run(["--db", url, "cells"]).stdout == display.cells_table(api_cells(url)) + "\n"
    history = api_history(url, "a", "bad")
    assert run(["--db", url, "history", "a", "bad"]).stdout == display.history_table(history) + "\n"
    assert run(["--db", url, "cells", "--session", "nobody"]).stdout == "(no cells)\n"


def test_jsonl_is_one_object_a_line(url: str) -> None:
    out = run(["--db", url, "cells", "--format", "jsonl"]).stdout
    assert out == "".join(json.dumps(inspection.record(c)) + "\n" for c in api_cells(url))
    assert run(["--db", url, "cells", "--session", "nobody", "--format", "jsonl"]).stdout == ""


@pytest.mark.parametrize(("name", "delimiter"), [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_have_a_header_and_one_line_a_record(url: str, name: str, delimiter: str) -> None:
    out = run(["--db", url, "history", "a", "bad", "--format", name]).stdout
    rows = list(csv.reader(io.StringIO(out), delimiter=delimiter))
    assert rows[0] == list(RECORD_KEYS[Observation])
    (failed,) = api_history(url, "a", "bad")
    expected = {**inspection.record(failed), "kind": "", "released_at": "", "host_id": ""}
    assert rows[1:] == [[str(expected[key]) for key in RECORD_KEYS[Observation]]]
    cells = list(
        csv.DictReader(io.StringIO(run(["--db", url, "cells", "--format", name]).stdout), delimiter=delimiter)
    )
    assert [(r["cell_id"], r["closed"], r["last_generation"]) for r in cells] == [
        (
            c.cell_id,
            "true" if c.closed else "false",
            "" if c.last_generation is None else str(c.last_generation),
        )
        for c in api_cells(url)
    ]
    empty = run(["--db", url, "cells", "--session", "nobody", "--format", name]).stdout
    assert empty == delimiter.join(RECORD_KEYS[CellSummary]) + "\n"


def test_tsv_and_csv_escape_tabs_newlines_and_controls(store_url: str) -> None:
    session = "s\tx\ny\x1b[31m"
    with ObservationStore.open(store_url) as store:
        store.session(session).create_cell("c")
    for name, delimiter in (("tsv", "\t"), ("csv", ",")):
        out = run(["--db", store_url, "cells", "--format", name]).stdout
        lines = out.splitlines()
        assert len(lines) == 2 and ESC not in out
        assert lines[1].split(delimiter)[:2] == ["s\\tx\\ny\\x1b[31m", "c"]


# -- limits and filters -----------------------------------------------------------------------------


def test_limit(url: str) -> None:
    every = [inspection.record(c) for c in api_cells(url)]
    for limit in (1, 2, len(every), len(every) + 5):
        out = json.loads(run(["--db", url, "cells", "--limit", str(limit), "--json"]).stdout)
        assert out == every[:limit]
    assert [
        s["session_id"] for s in json.loads(run(["--db", url, "sessions", "--limit", "1", "--json"]).stdout)
    ] == ["a"]
    gens = json.loads(run(["--db", url, "history", "b", "y", "--limit", "2", "--json"]).stdout)
    assert [g["generation"] for g in gens] == [0, 1]
    table = run(["--db", url, "cells", "--limit", "2"]).stdout.splitlines()
    assert len(table) == 4  # header, rule, two rows


@pytest.mark.parametrize("state", ["pending", "failed", "retained", "released"])
def test_state_filter_is_the_state_of_the_last_generation(url: str, state: str) -> None:
    out = json.loads(run(["--db", url, "cells", "--state", state, "--json"]).stdout)
    expected = [(c.session_id, c.cell_id) for c in api_cells(url) if c.last_state == state]
    assert [(r["session_id"], r["cell_id"]) for r in out] == expected
    assert expected  # the fixture holds a cell of every state


def test_closed_and_open_filters_combine_with_the_others(url: str) -> None:
    every = api_cells(url)
    for flag, closed in (("--closed", True), ("--open", False)):
        out = json.loads(run(["--db", url, "cells", flag, "--json"]).stdout)
        assert [r["cell_id"] for r in out] == [c.cell_id for c in every if c.closed is closed]
    out = json.loads(
        run(["--db", url, "cells", "--open", "--session", "b", "--state", "retained", "--json"]).stdout
    )
    assert [r["cell_id"] for r in out] == ["y"]
    out = json.loads(run(["--db", url, "cells", "--open", "--session", "a", "--limit", "1", "--json"]).stdout)
    assert [r["cell_id"] for r in out] == [next(c.cell_id for c in every if not c.closed)]


# -- streaming -----------------------------------------------------------------------------------------


def test_rows_are_printed_as_they_are_read(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with ObservationStore.open(store_url) as store:
        s = store.session("s")
        for index in range(250):
            s.create_cell(f"c{index:03d}")
    real = inspection.iter_cells

    def fails_after_150(*args: Any, **kwargs: Any) -> Iterator[CellSummary]:
        # Fault injection: the read breaks after 150 rows, as a dropped server connection would.
        for count, row in enumerate(real(*args, **kwargs)):
            if count == 150:
                raise RuntimeError("connection lost")
            yield row

    monkeypatch.setattr(inspection, "iter_cells", fails_after_150)
    for args in (["cells"], ["cells", "--format", "jsonl"], ["cells", "--format", "csv"]):
        result = run(["--db", store_url, *args], 1)
        assert "c099" in result.stdout  # the first chunk was out before the failure
        assert result.stderr.startswith("error: unexpected RuntimeError: connection lost")


def test_the_library_listing_is_lazy(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        s = store.session("s")
        for index in range(30):
            s.create_cell(f"c{index:02d}")
        rows = inspection.iter_cells(store)
        assert next(rows).cell_id == "c00"
        # The cursor is still open inside its read transaction; a writer is not blocked by it.
        s.create_cell("late")
        rows.close()
        assert [c.cell_id for c in inspection.iter_cells(store, limit=2)] == ["c00", "c01"]


def test_a_long_table_keeps_its_columns_aligned_chunk_by_chunk() -> None:
    rows = [["a", "1"], ["bb", "22"], ["cccc", "3"], ["d", "4444"]]
    lines = list(display.stream_table(["name", "n"], rows, right={1}, chunk=2))
    assert lines == [
        "name   n",
        "----  --",
        "a      1",
        "bb    22",
        "cccc     3",  # the second chunk widened the first column: from here on, wider
        "d     4444",
    ]
    assert (
        list(display.stream_table(["name", "n"], rows, right={1}, chunk=None))
        == display.format_table(["name", "n"], rows, right={1}).splitlines()
    )


def test_an_80_column_terminal_leaves_columns_out_before_it_falls_back_to_blocks(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    (cell,) = api_cells(url, "b")
    full = display.cells_table([cell]).splitlines()
    assert len(full[0]) > 80  # every column does not fit
    shown = run(["--db", url, "cells", "--session", "b"], env={"COLUMNS": "80", "NO_COLOR": "1"}).stdout
    lines = shown.splitlines()
    assert lines[0].split("  ")[:2] == ["session", "cell"] and "last activity" not in lines[0]
    assert all(len(line) <= 80 for line in lines[:3]) and len(lines) == 4  # header, rule, row, note
    assert lines[-1] == ("(left out to fit 80 columns: last activity (UTC); --format csv has every column)")
    # Narrower, more columns go (the least needed first), and the table stays a table.
    for args, width in ((["cells", "--session", "b"], 44), (["history", "b", "y"], 50)):
        narrower = run(["--db", url, *args], env={"COLUMNS": str(width), "NO_COLOR": "1"}).stdout.splitlines()
        assert "-[ row" not in narrower[0] and narrower[0].startswith(("session  cell", "gen  state"))
        assert all(len(line) <= width for line in narrower[:-1])
        assert narrower[-1].startswith(f"(left out to fit {width} columns: ")


def test_a_table_wider_than_the_terminal_becomes_blocks(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    # Too narrow even for the columns that are never left out.
    narrow = run(["--db", url, "cells", "--session", "b"], env={"COLUMNS": "20", "NO_COLOR": "1"}).stdout
    (cell,) = api_cells(url, "b")
    row = display.cell_row(cell)
    width = max(len(h) for h in display.CELL_COLUMNS.headers)
    assert narrow.splitlines() == [
        "-[ row 1 ]-",
        *(f"{h.ljust(width)}  {v}" for h, v in zip(display.CELL_COLUMNS.headers, row, strict=True)),
    ]
    wide = run(["--db", url, "cells", "--session", "b"], env={"COLUMNS": "300", "NO_COLOR": "1"}).stdout
    assert wide == display.cells_table([cell]) + "\n"
    assert max(map(len, narrow.splitlines())) < len(wide.splitlines()[0]) / 2
    # Off a terminal (a pipe, a file) the table stays a table whatever COLUMNS says.
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: False)
    assert run(["--db", url, "cells", "--session", "b"], env={"COLUMNS": "40"}).stdout == wide


# -- colour ---------------------------------------------------------------------------------------------


def test_states_are_coloured_on_a_terminal_only(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = run(["--db", url, "cells"], env={"COLUMNS": "300"}).stdout
    assert ESC not in plain  # not a terminal
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    coloured = run(["--db", url, "cells"], env={"COLUMNS": "300", "NO_COLOR": ""}).stdout
    for state, code in (("retained", "32"), ("failed", "31"), ("pending", "33"), ("released", "90")):
        assert f"{ESC}[{code}m{state}" in coloured, state
    assert coloured.replace(f"{ESC}[0m", "").replace(ESC, "") != coloured
    stripped = coloured
    for code in ("32", "31", "33", "90", "0"):
        stripped = stripped.replace(f"{ESC}[{code}m", "")
    assert stripped == plain  # colour changes nothing else, alignment included
    history = run(["--db", url, "history", "a", "bad"], env={"COLUMNS": "300"}).stdout
    assert f"{ESC}[31mfailed" in history
    assert ESC not in run(["--db", url, "cells"], env={"COLUMNS": "300", "NO_COLOR": "1"}).stdout
    assert ESC not in run(["--db", url, "cells", "--format", "csv"], env={"NO_COLOR": ""}).stdout


def test_errors_are_coloured_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "missing.db")
    assert run(["--db", missing, "cells"], 1).stderr.startswith("error: no store at")
    monkeypatch.setattr(cli_module, "_stderr_is_terminal", lambda: True)
    assert run(["--db", missing, "cells"], 1, env={"NO_COLOR": ""}).stderr.startswith(
        f"{ESC}[31m{ESC}[1merror:"
    )
    assert run(["--db", missing, "cells", "--limit", "x"], 2, env={"NO_COLOR": ""}).stderr.startswith(ESC)
    assert run(["--db", missing, "cells"], 1, env={"NO_COLOR": "1"}).stderr.startswith("error: no store at")


# -- bad input ------------------------------------------------------------------------------------------

BAD_LISTING_OPTIONS = [
    (["cells", "--limit", "0"], "out of range"),
    (["cells", "--limit", "-1"], "'-1' is not a limit"),
    (["cells", "--limit", "1_0"], "'1_0' is not a limit"),
    (["cells", "--limit", "x"], "'x' is not a limit"),
    (["cells", "--limit", "2.5"], "'2.5' is not a limit"),
    (["cells", "--limit", "+3"], "'+3' is not a limit"),
    (["cells", "--limit", "\u0663"], "is not a limit"),  # an Arabic-Indic three: int() would take it
    (["cells", "--limit", str(2**63)], "out of range"),
    (["cells", "--limit"], "requires an argument"),
    (["sessions", "--limit", "0"], "out of range"),
    (["history", "a", "done", "--limit", "zero"], "is not a limit"),
    (["cells", "--format", "xml"], "'xml' is not one of"),
    (["cells", "--format", "JSON"], "is not one of"),
    (["sessions", "--format", ""], "is not one of"),
    (["history", "a", "done", "--format", "yaml"], "is not one of"),
    (["cells", "--json", "--format", "csv"], "--json means --format json"),
    (["cells", "--state", "done"], "'done' is not one of"),
    (["cells", "--state", "RETAINED"], "is not one of"),
    (["cells", "--state"], "requires an argument"),
    (["cells", "--closed", "yes"], "unexpected extra argument"),
    (["sessions", "--state", "retained"], "No such option"),
]


@pytest.mark.parametrize(
    ("args", "words"), BAD_LISTING_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_bad_listing_options_are_one_line_and_change_nothing(url: str, args: list[str], words: str) -> None:
    with ObservationStore.open(url) as store:
        before = dump(store)
    assert_usage_error(run(["--db", url, *args], 2), words, "--help")
    with ObservationStore.open(url) as store:
        assert dump(store) == before


def fill_past_a_pipe_buffer(path: Path, listing: str) -> None:
    """Give the store far more rows of ``listing`` than a pipe's buffer holds."""
    done = Outcome.yielded([TextItem("x")])
    with ObservationStore.open(path, durability="normal") as store:
        if listing == "history":  # one cell, many generations
            s = store.session("s")
            s.create_cell("c")
            for generation in range(2000):
                s.begin("c", generation)
                s.record("c", generation, done)
            return
        for index in range(2000):  # one cell each, in one session or in as many sessions
            s = store.session(f"session-{index:05d}" if listing == "sessions" else "s")
            s.create_cell(f"cell-{index:05d}")
            s.begin(f"cell-{index:05d}", 0)
            s.record(f"cell-{index:05d}", 0, done)


@pytest.mark.parametrize("command", [["cells", "--format", "csv"], ["sessions"], ["history", "s", "c"]])
def test_a_reader_that_stops_early_gets_no_error_line(tmp_path: Path, command: list[str]) -> None:
    # `codemode-store cells | head -2`: the reader closes the pipe after its lines.
    path = tmp_path / "big.db"
    fill_past_a_pipe_buffer(path, command[0])
    with subprocess.Popen(["head", "-n", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as reader:
        writer = subprocess.run(
            [sys.executable, str(Path(cli_module.__file__)), "--db", str(path), *command],
            stdout=reader.stdin,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.close()
        shown = reader.stdout.read().decode()
    assert len(shown.splitlines()) == 2
    assert writer.stderr == ""
    # One status for a closed pipe: 0, as when a short listing fits the pipe before the reader exits.
    assert writer.returncode == 0


@pytest.mark.parametrize("command", [["sessions"], ["stats"]])
def test_a_pipe_closed_before_the_first_write_ends_the_command_with_status_0(
    tmp_path: Path, command: list[str]
) -> None:
    # The reader is gone before the command writes at all: the broken pipe is certain, not a race.
    path = tmp_path / "small.db"
    with ObservationStore.open(path) as store:
        store.session("s").create_cell("c")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        writer = subprocess.run(
            [sys.executable, str(Path(cli_module.__file__)), "--db", str(path), *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (writer.returncode, writer.stderr) == (0, "")


@pytest.mark.parametrize("command", [["cells"], ["release", "s", "c", "0"]])
def test_a_closed_stdout_is_one_error_line_and_nothing_is_done(tmp_path: Path, command: list[str]) -> None:
    # `codemode-store cells >&-`: Python starts with sys.stdout None; the command says so and does nothing.
    path = tmp_path / "closed.db"
    with ObservationStore.open(path) as store:
        session = store.session("s")
        session.create_cell("c")
        session.begin("c", 0)
        session.record("c", 0, Outcome.completed([TextItem("kept")]))
    writer = subprocess.run(
        [sys.executable, str(Path(cli_module.__file__)), "--db", str(path), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert writer.returncode == 1
    assert writer.stderr == "error: standard output is closed: nothing could be printed; nothing was done\n"
    with ObservationStore.open(path) as store:
        observation = store.session("s").get("c", 0)
        assert observation is not None and observation.state == "retained"
