"""The ``copy``, ``backup``, ``export`` and ``import`` commands: output, progress, and bad input.

Each bad input is one ``error:`` line on stderr, exit status 1 (2 for usage),
no traceback, and neither store changed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from support.cli_runner import cli as run
from support.cli_runner import error_line
from support.moving import of_sessions, populate, rows
from support.tables import dump

import cli as cli_module
from codemode_store import ObservationStore
from codemode_store.cli_support.moving import copy_state_text
from codemode_store.transfer import CopyState


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A SQLite store with sessions s1 and s2 holding rows of every kind."""
    path = str(tmp_path / "source.db")
    with ObservationStore.open(path) as store:
        populate(store, "s1")
        populate(store, "s2")
    return path


def snapshot_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    with ObservationStore.open(url) as store:
        return rows(store)


def test_copy_prints_what_it_did_and_a_rerun_skips(source: str, store_url: str) -> None:
    done = run(["--db", source, "copy", "--to", store_url])
    assert done.stdout.startswith("copied 2 session(s) into ")
    assert "each payload's sha256 checked" in done.stdout and done.stderr == ""
    assert snapshot_of(store_url) == snapshot_of(source)
    again = json.loads(run(["copy", "--db", source, "--to", store_url, "--json"]).stdout)
    assert (again["copied"], again["skipped"], again["rows"]) == ([], ["s1", "s2"], 0)


def test_copy_refuses_sessions_that_differ_naming_them(source: str, tmp_path: Path) -> None:
    target = str(tmp_path / "target.db")
    run(["--db", source, "copy", "--to", target, "--session", "s2"])
    with ObservationStore.open(target) as store:
        store.session("s2").release("stopped", 0)
    before = snapshot_of(target)
    line = error_line(run(["--db", source, "copy", "--to", target], code=1))
    assert "'s2'" in line and "'s1'" not in line and "nothing was copied" in line
    assert snapshot_of(target) == before


def test_copy_draws_progress_on_a_terminal_only(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = run(["--db", source, "copy", "--to", str(tmp_path / "piped.db")])
    assert not piped.stdout.startswith("copying")
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    assert not run(["--db", source, "copy", "--to", str(tmp_path / "json.db"), "--json"]).stdout.startswith(
        "copying"
    )
    drawn = run(["--db", source, "copy", "--to", str(tmp_path / "terminal.db")])
    assert drawn.stdout.startswith("copying")  # click draws the bar itself only on a real terminal
    note = copy_state_text(CopyState(1, 2, 15, 30, 1000, 2302))
    assert note == "sessions 1/2  rows 15/30  bytes 1,000/2,302"


def test_backup_writes_a_private_checked_file(source: str, tmp_path: Path) -> None:
    destination = tmp_path / "backup.db"
    done = run(["--db", source, "backup", str(destination)])
    assert "sqlite online backup" in done.stdout and "none corrupt" in done.stdout
    assert stat.S_IMODE(os.stat(destination).st_mode) == 0o600
    assert snapshot_of(str(destination)) == snapshot_of(source)
    report = json.loads(run(["--db", source, "backup", str(tmp_path / "again.db"), "--json"]).stdout)
    assert report["check"]["ok"] is True and report["method"] == "sqlite online backup"


def test_export_and_import_through_files_and_pipes(source: str, tmp_path: Path) -> None:
    out = tmp_path / "s1.jsonl"
    done = run(["--db", source, "export", "s1", "--out", str(out)])
    assert done.stdout == f"exported session 's1' to {out}: 7 cells, 8 observations, 1,151 payload bytes\n"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    target = str(tmp_path / "new.db")  # import creates the store
    assert "imported session 's1'" in run(["--db", target, "import", str(out)]).stdout
    piped = run(["--db", source, "export", "s2"]).stdout_bytes
    assert piped.startswith(b'{"format":"codemode-store-session","format_version":1,')
    run(["--db", target, "import", "-"], input=piped)
    with ObservationStore.open(target) as imported, ObservationStore.open(source) as original:
        assert dump(imported) == dump(original)


def test_export_will_not_print_payloads_on_a_terminal(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    assert "--out" in error_line(run(["--db", source, "export", "s1"], code=2))


# -- bad input: one line, exit 1 or 2, nothing changed ----------------------------------------------


def _bad_inputs(source: str, tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    exported = tmp_path / "s1.jsonl"
    run(["--db", source, "export", "s1", "--out", str(exported)])
    data = exported.read_bytes()
    (tmp_path / "v2.jsonl").write_bytes(data.replace(b'"format_version":1', b'"format_version":2', 1))
    (tmp_path / "cut.jsonl").write_bytes(data[: len(data) - 100])
    (tmp_path / "edited.jsonl").write_bytes(data.replace(b'"cell_id":"idle"', b'"cell_id":"idla"', 1))
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"")
    held = tmp_path / "held.db"
    with ObservationStore.open(held) as store:
        populate(store, "s1")
    unreachable = "postgresql+psycopg://user:secret@127.0.0.1:9/nothing?connect_timeout=1"
    return {
        "unopenable target": (["copy", "--to", unreachable], 1, "unreachable"),
        "target in a missing folder": (["copy", "--to", str(tmp_path / "no" / "t.db")], 1, "unable to open"),
        "source as target": (["copy", "--to", source], 1, "is the source store itself"),
        "unknown session to copy": (
            ["copy", "--to", str(tmp_path / "t.db"), "--session", "nope"],
            1,
            "no such",
        ),
        "backup into a missing folder": (["backup", str(tmp_path / "no" / "b.db")], 1, "does not exist"),
        "backup over a file": (["backup", str(existing)], 1, "exists already"),
        "unknown session to export": (["export", "nope", "--out", str(tmp_path / "x.jsonl")], 1, "no such"),
        "export into a missing folder": (
            ["export", "s1", "--out", str(tmp_path / "no" / "x.jsonl")],
            1,
            "exist",
        ),
        "other format version": (["--db", str(held), "import", str(tmp_path / "v2.jsonl")], 1, "version 2"),
        "truncated file": (
            ["--db", str(tmp_path / "n.db"), "import", str(tmp_path / "cut.jsonl")],
            1,
            "truncated",
        ),
        "edited file": (
            ["--db", str(tmp_path / "n.db"), "import", str(tmp_path / "edited.jsonl")],
            1,
            "changed",
        ),
        "missing file": (
            ["--db", str(tmp_path / "n.db"), "import", str(tmp_path / "none.jsonl")],
            1,
            "cannot read",
        ),
        "session held": (["--db", str(held), "import", str(exported)], 1, "already holds"),
        "copy without --to": (["copy"], 2, "--to"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unopenable target",
        "target in a missing folder",
        "source as target",
        "unknown session to copy",
        "backup into a missing folder",
        "backup over a file",
        "unknown session to export",
        "export into a missing folder",
        "other format version",
        "truncated file",
        "edited file",
        "missing file",
        "session held",
        "copy without --to",
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(source: str, tmp_path: Path, case: str) -> None:
    args, code, words = _bad_inputs(source, tmp_path)[case]
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    held_before = snapshot_of(str(tmp_path / "held.db"))
    source_before = snapshot_of(source)
    if args[0] != "--db":
        args = ["--db", source, *args]
    line = error_line(run(args, code=code))
    assert words in line, line
    assert "secret" not in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before
    assert snapshot_of(source) == source_before
    assert snapshot_of(str(tmp_path / "held.db")) == held_before
    assert of_sessions(held_before, "s1") == held_before
