"""The ``codemode-store`` command line: every command, its JSON keys, every error path."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import make_url
from support.cli_runner import cli

import cli as cli_module
import codemode_store
from cli import main
from codemode_store import ImageItem, ObservationStore, Outcome, TextItem, __version__, errors
from codemode_store.cli_support import inspection
from codemode_store.cli_support.display import summarise_image
from codemode_store.cli_support.inspection import RECORD_KEYS, SessionSummary, StoreStats
from codemode_store.migrate import HEAD_REVISION
from codemode_store.observation import CellSummary, Observation

CLI_DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
ERRORS_DOCS = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
IMAGE_BYTES = bytes(range(256)) * 3 + b"tail"  # 772 bytes, not a multiple of 3
IMAGE_URL = "data:image/png;base64," + base64.b64encode(IMAGE_BYTES).decode("ascii")
FINAL = Outcome.completed(
    [TextItem("line one\nline two"), ImageItem(IMAGE_URL, "low")], error_text="ValueError: boom"
)


def run(args: list[str], code: int = 0, **kwargs: object) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped unhandled."""
    result = CliRunner().invoke(main, args, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_one_line_error(result: Result, *words: str) -> None:
    """Assert a store error: exit 1, one ``error:`` line on stderr, nothing on stdout."""
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def url(store_url: str) -> str:
    """A store with two sessions: s1 has cells c1 (yield, complete+image) and c2 (pending); s2 has c9."""
    with ObservationStore.open(store_url) as store:
        s1 = store.session("s1")
        s1.create_cell("c1")
        s1.begin("c1", 0)
        s1.record("c1", 0, Outcome.yielded([TextItem("partial")]))
        s1.begin("c1", 1)
        s1.record("c1", 1, FINAL)
        s1.create_cell("c2")
        s1.begin("c2", 0)
        s2 = store.session("s2")
        s2.create_cell("c9")
        s2.begin("c9", 0)
        s2.fail("c9", 0, "runtime exploded")
    return store_url


def observation(target: str, session: str, cell: str, generation: int) -> Observation:
    with ObservationStore.open(target) as store:
        found = store.session(session).get(cell, generation)
    assert found is not None
    return found


# -- the group ------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


ALL_COMMANDS = _commands(main)


def test_version() -> None:
    assert __version__ in run(["--version"]).stdout


def test_the_spec_commands_exist() -> None:
    expected = {"sessions", "cells", "history", "show", "release", "end-session", "stats", "db", "demo"}
    assert expected <= {c[0] for c in ALL_COMMANDS}
    assert {("db", "upgrade"), ("db", "current"), ("db", "history")} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("command", [(), *ALL_COMMANDS], ids=lambda c: " ".join(c) or "main")
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    out = run([*command, "--help"]).stdout
    assert "Example:" in out
    assert re.search(r"^\s+codemode-store .+", out, re.MULTILINE), out
    if command:
        parent = run([*command[:-1], "--help"]).stdout
        summary = re.search(rf"^\s+{re.escape(command[-1])}\s+(\S.*)$", parent, re.MULTILINE)
        assert summary is not None and len(summary.group(1)) > 10
        assert not summary.group(1).endswith("..."), "click cut the one-line description short"


def test_every_command_and_option_is_in_the_cli_docs() -> None:
    docs = CLI_DOCS.read_text(encoding="utf-8")
    for command in ALL_COMMANDS:
        assert re.search(rf"codemode-store (--db \S+ )?{' '.join(command)}\b", docs), command
        target: click.Command = main
        for name in command:
            assert isinstance(target, click.Group)
            target = target.commands[name]
        for param in target.params:
            if isinstance(param, click.Option):
                assert any(opt in docs for opt in param.opts), (command, param.opts)


def test_the_cli_docs_document_every_json_key() -> None:
    section = CLI_DOCS.read_text(encoding="utf-8").split("## JSON keys", 1)[1]
    for keys in RECORD_KEYS.values():
        for key in keys:
            assert f"`{key}`" in section, key


def test_every_error_class_is_exported_and_documented() -> None:
    docs = ERRORS_DOCS.read_text(encoding="utf-8")
    for name in errors.__all__:
        error = getattr(errors, name)
        assert getattr(codemode_store, name) is error, name
        assert name in codemode_store.__all__, name
        assert issubclass(error, errors.StoreError)
        if name != "StoreError":
            row = next((line for line in docs.splitlines() if line.startswith(f"| `{name}`")), None)
            assert row is not None, name
            assert re.search(r"\*\*(retry|resync|give up)\*\*", row), name
            assert error.__doc__ and error.__doc__.strip(), name


# -- read commands --------------------------------------------------------------------------


def test_sessions(url: str) -> None:
    table = run(["--db", url, "sessions"]).stdout.splitlines()
    assert table[0].split()[:2] == ["session", "cells"]
    assert [line.split()[0] for line in table[2:]] == ["s1", "s2"]
    records = json.loads(run(["--db", url, "sessions", "--json"]).stdout)
    assert [tuple(r) for r in records] == [RECORD_KEYS[SessionSummary]] * 2
    s1 = records[0]
    final_bytes = observation(url, "s1", "c1", 1).payload_bytes
    assert (s1["session_id"], s1["cells"], s1["open_cells"], s1["observations"]) == ("s1", 2, 1, 3)
    assert s1["retained_bytes"] == final_bytes  # generation 0 was released by begin(1); c2 is pending
    assert s1["last_activity"].endswith("+00:00")


def test_cells_of_every_session_and_of_one(url: str) -> None:
    records = json.loads(run(["--db", url, "cells", "--json"]).stdout)
    assert [(r["session_id"], r["cell_id"]) for r in records] == [("s1", "c1"), ("s1", "c2"), ("s2", "c9")]
    assert all(tuple(r) == RECORD_KEYS[CellSummary] for r in records)
    c1 = records[0]
    assert (c1["closed"], c1["last_generation"], c1["last_state"], c1["last_kind"]) == (
        True,
        1,
        "retained",
        "completed",
    )
    only = json.loads(run(["--db", url, "cells", "--session", "s2", "--json"]).stdout)
    assert [r["cell_id"] for r in only] == ["c9"]
    table = run(["--db", url, "cells", "--session", "s1"]).stdout.splitlines()
    assert [line.split()[:3] for line in table[2:]] == [["s1", "c1", "closed"], ["s1", "c2", "open"]]
    assert run(["--db", url, "cells", "--session", "nobody"]).stdout.strip() == "(no cells)"


def test_history(url: str) -> None:
    records = json.loads(run(["--db", url, "history", "s1", "c1", "--json"]).stdout)
    assert all(tuple(r) == RECORD_KEYS[Observation] for r in records)
    assert [(r["generation"], r["state"], r["kind"]) for r in records] == [
        (0, "released", "yielded"),
        (1, "retained", "completed"),
    ]
    assert records[0]["released_at"] is not None and records[1]["released_at"] is None
    assert records[1]["payload_sha256"] == observation(url, "s1", "c1", 1).payload_sha256
    rows = run(["--db", url, "history", "s1", "c1"]).stdout.splitlines()[2:]
    assert [row.split()[:3] for row in rows] == [["0", "released", "yielded"], ["1", "retained", "completed"]]
    failed = json.loads(run(["--db", url, "history", "s2", "c9", "--json"]).stdout)
    assert (failed[0]["state"], failed[0]["error_text"]) == ("failed", "runtime exploded")


def test_show_prints_text_and_summarises_images(url: str) -> None:
    out = run(["--db", url, "show", "s1", "c1", "1"]).stdout
    assert "    line one\n    line two" in out
    assert "ValueError: boom" in out
    image_line = next(line for line in out.splitlines() if "image" in line and "image/png" in line)
    assert f"{len(IMAGE_BYTES):,} bytes" in image_line
    assert "detail low" in image_line
    assert IMAGE_URL[22:60] not in out  # no base64 dumped


def test_show_defaults_to_the_last_generation(url: str) -> None:
    assert run(["--db", url, "show", "s1", "c1"]).stdout == run(["--db", url, "show", "s1", "c1", "1"]).stdout


def test_show_json_is_the_wire_outcome(url: str) -> None:
    printed = json.loads(run(["--db", url, "show", "s1", "c1", "1", "--json"]).stdout)
    assert printed == FINAL.to_wire("c1")
    assert Outcome.from_wire(printed) == FINAL


def test_show_a_tombstone(url: str) -> None:
    with ObservationStore.open(url) as store:
        store.session("s1").release("c1", 1)
    released = observation(url, "s1", "c1", 1)
    out = run(["--db", url, "show", "s1", "c1", "1"]).stdout
    assert "released" in out and "completed" in out
    assert released.payload_sha256 is not None and released.payload_sha256 in out
    assert str(released.payload_bytes) in out
    assert released.released_at is not None and released.released_at.strftime("%Y-%m-%d %H:%M:%S") in out
    assert "line one" not in out
    assert_one_line_error(run(["--db", url, "show", "s1", "c1", "1", "--json"], 1), "released")


def test_show_a_failed_and_a_pending_generation(url: str) -> None:
    out = run(["--db", url, "show", "s2", "c9", "0"]).stdout
    assert "failed" in out and "runtime exploded" in out
    assert "pending" in run(["--db", url, "show", "s1", "c2"]).stdout
    assert_one_line_error(run(["--db", url, "show", "s2", "c9", "--json"], 1), "failed")


def test_stats(url: str) -> None:
    out = json.loads(run(["--db", url, "stats", "--json"]).stdout)
    assert tuple(out) == RECORD_KEYS[StoreStats]
    final_bytes = observation(url, "s1", "c1", 1).payload_bytes or 0
    expected = {"sessions": 2, "cells": 3, "observations": 4, "retained": 1, "released": 1}
    assert {k: out[k] for k in expected} == expected
    assert (out["pending"], out["failed"]) == (1, 1)
    assert out["retained_bytes"] == final_bytes + len(b"runtime exploded")
    assert (out["schema_revision"], out["head_revision"]) == (HEAD_REVISION, HEAD_REVISION)
    if out["backend"] == "sqlite":
        assert out["file_bytes"] == os.path.getsize(url)
    text = run(["--db", url, "stats"]).stdout
    password = make_url(url).password if "://" in url else None
    if password:
        assert str(password) not in text + json.dumps(out)
        assert "***" in out["database"]
    assert re.search(r"^sessions\s+2$", text, re.MULTILINE)
    assert re.search(rf"^schema revision\s+{HEAD_REVISION} \(head\)$", text, re.MULTILINE)


# -- write commands ---------------------------------------------------------------------------


def test_release_follows_the_api_rules(url: str) -> None:
    assert "released" in run(["--db", url, "release", "s1", "c1", "1"]).stdout
    assert observation(url, "s1", "c1", 1).state == "released"
    assert "already released" in run(["--db", url, "release", "s1", "c1", "1"]).stdout
    assert "already released" in run(["--db", url, "release", "s1", "c1", "0"]).stdout
    assert_one_line_error(run(["--db", url, "release", "s1", "c1", "2"], 1), "'c1'", "generation 2")
    assert_one_line_error(run(["--db", url, "release", "s1", "c2", "0"], 1), "pending")
    assert_one_line_error(run(["--db", url, "release", "s2", "c9", "0"], 1), "failed")
    assert_one_line_error(run(["--db", url, "release", "s9", "c1", "0"], 1), "'s9'", "does not know")


def test_release_refuses_a_non_terminal_yield(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        s = store.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.yielded([TextItem("more later")]))
    assert_one_line_error(run(["--db", store_url, "release", "s", "c", "0"], 1), "not terminal")
    assert observation(store_url, "s", "c", 0).state == "retained"


def test_end_session(url: str) -> None:
    assert "3 observation(s) deleted" in run(["--db", url, "end-session", "s1"]).stdout
    with ObservationStore.open(url) as store:
        assert [c.session_id for c in store.cells()] == ["s2"]
    # The API's end_session of an unknown session is a no-op; the command says so, exit 1.
    assert_one_line_error(run(["--db", url, "end-session", "s1"], 1), "'s1'", "no such session")
    with ObservationStore.open(url) as store:
        assert store.end_session("s1") == 0


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["history", "s1", "nope"],
        ["history", "nobody", "c1"],
        ["show", "s1", "nope"],
        ["show", "s1", "nope", "0"],
        ["release", "s1", "nope", "0"],
    ],
)
def test_unknown_cell_is_one_line_exit_1(url: str, args: list[str]) -> None:
    assert_one_line_error(run(["--db", url, *args], 1), "does not know this cell")


def test_unknown_generation_is_one_line_exit_1(url: str) -> None:
    assert_one_line_error(run(["--db", url, "show", "s1", "c1", "7"], 1), "generation 7")


@pytest.mark.parametrize(
    "args",
    [
        ["show", "s1", "c1", "x"],
        ["show", "s1", "c1", "1.5"],
        ["show", "s1", "c1", "-1"],
        ["show", "s1", "c1", str(2**63)],
        ["release", "s1", "c1", "x"],
        ["release", "s1", "c1"],
        ["history", "s1"],
        ["no-such-command"],
        ["sessions", "--bogus"],
    ],
)
def test_usage_errors_exit_2(url: str, args: list[str]) -> None:
    result = run(["--db", url, *args], 2)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["sessions"],
        ["cells"],
        ["history", "s", "c"],
        ["show", "s", "c"],
        ["stats"],
        ["release", "s", "c", "0"],
        ["end-session", "s"],
        ["db", "current"],
    ],
)
def test_commands_other_than_upgrade_never_create_a_store(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    assert_one_line_error(run(["--db", str(missing), *args], 1), "no store at", str(missing))
    assert not missing.exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all" * 200)
    assert_one_line_error(run(["--db", str(junk), "stats"], 1))
    assert junk.read_bytes() == b"this is not a database file at all" * 200


def test_a_database_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    ObservationStore.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    assert_one_line_error(run(["--db", str(path), "cells"], 1), "'9999'", "newer")


@pytest.mark.parametrize(
    "url_with_password",
    [
        "postgresql+psycopg://alice:Pa55wordXYZ@127.0.0.1:1/codemode",
        # The port is the password: the parser's complaint quotes it.
        "postgresql+psycopg://alice:Pa55wordXYZ@localhost:Pa55wordXYZ/codemode",
        "nosuchdialect://alice:Pa55wordXYZ@localhost/codemode",
    ],
)
def test_a_password_is_never_printed(url_with_password: str) -> None:
    for args in (["stats"], ["db", "current"], ["db", "upgrade"]):
        result = run(["--db", url_with_password, *args], 1)
        assert "Pa55wordXYZ" not in result.stdout + result.stderr
        assert_one_line_error(result)


def test_a_common_password_is_hidden_without_blanking_the_rest_of_the_message() -> None:
    # The password "postgres" is also the user, the database and half the dialect's name.
    result = run(["--db", "postgresql+nodriver://postgres:postgres@localhost/postgres", "stats"], 1)
    assert_one_line_error(
        result, "postgresql+nodriver://postgres:***@localhost/postgres", "dialects:postgresql.nodriver"
    )
    assert ":postgres@" not in result.stderr


def test_a_database_path_that_is_not_utf8_is_one_error_line(tmp_path: Path) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/not-utf8-\xff.db")  # a lone surrogate in the str
    for args in (["stats"], ["db", "upgrade"], ["cells", "--json"]):
        result = run(["--db", path, *args], 1)
        assert_one_line_error(result, "not valid UTF-8", "\\udcff")
        assert "\udcff" not in result.stderr  # the lone surrogate itself is never printed
    assert list(tmp_path.iterdir()) == []


def test_an_unforeseen_exception_is_one_error_line_not_a_traceback(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection, not a database mock: a bug or driver surprise deep in a command.
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("driver surprise with \x1b[31m in it")

    monkeypatch.setattr(inspection, "stats", explode)
    assert_one_line_error(
        run(["--db", url, "stats"], 1), "unexpected RuntimeError", "driver surprise", "\\x1b"
    )


def test_a_sqlalchemy_warning_does_not_reach_stderr(tmp_path: Path) -> None:
    # A real process with every warning shown: pytest would otherwise swallow them.
    url = f"sqlite:///{tmp_path}/missing-folder/x.db?unknown_option=1"
    done = subprocess.run(
        [sys.executable, "-W", "always", str(Path(cli_module.__file__)), "--db", url, "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unable to open" in lines[0], done.stderr


# -- --db, the environment, the default -------------------------------------------------------------


def test_the_environment_variable_names_the_store(url: str) -> None:
    out = json.loads(run(["stats", "--json"], env={"CODEMODE_STORE_URL": url}).stdout)
    assert out["sessions"] == 2


def test_the_default_store_is_in_the_current_folder(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CODEMODE_STORE_URL", raising=False)
    assert_one_line_error(run(["stats"], 1), "codemode-store.db")
    ObservationStore.open("codemode-store.db").close()
    assert json.loads(run(["stats", "--json"]).stdout)["database"] == "codemode-store.db"


def test_db_upgrade_current_and_history_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # far from the source tree's alembic.ini and migrations/
    path = tmp_path / "fresh.db"
    assert f"to {HEAD_REVISION}" in run(["--db", str(path), "db", "upgrade"]).stdout
    assert path.exists()
    assert run(["--db", str(path), "db", "current"]).stdout.strip() == f"{HEAD_REVISION} (head)"
    assert "already at" in run(["--db", str(path), "db", "upgrade", HEAD_REVISION]).stdout
    rows = run(["--db", str(path), "db", "history"]).stdout.splitlines()[2:]
    head = next(row for row in rows if row.split()[0] == HEAD_REVISION)
    assert "head" in head and "current" in head
    assert_one_line_error(run(["--db", str(path), "db", "upgrade", "nonexistent"], 1), "nonexistent")
    assert run(["--db", str(path), "stats"]).exit_code == 0


def test_db_current_and_history_print_json_only_with_json(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    run(["--db", str(path), "db", "upgrade", "0001"])
    current = json.loads(run(["--db", str(path), "db", "current", "--json"]).stdout)
    assert current == {"schema_revision": "0001", "head_revision": HEAD_REVISION}
    history = json.loads(run(["db", "history", "--json", "--db", str(path)]).stdout)
    assert [revision["revision"] for revision in history][-1] == "0001"
    assert history[0] == {
        "revision": HEAD_REVISION,
        "down_revision": history[1]["revision"],
        "message": history[0]["message"],
        "is_head": True,
        "is_current": False,
    }
    assert history[0]["message"]
    assert [revision["revision"] for revision in history if revision["is_current"]] == ["0001"]
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert json.loads(run(["--db", str(empty), "db", "current", "--json"]).stdout) == {
        "schema_revision": None,
        "head_revision": HEAD_REVISION,
    }


def test_db_current_of_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    path.touch()
    assert "no schema yet" in run(["--db", str(path), "db", "current"]).stdout
    assert_one_line_error(run(["--db", str(path), "cells"], 1), "no store at")


# -- what a payload can do to the terminal ----------------------------------------------------------

HOSTILE = "red\x1b[31mALERT\x07 back\x08 cr\roverwrite csi\x9b2J rtl\u202eevil"
RAW_CONTROLS = ("\x1b", "\x07", "\x08", "\r", "\x9b", "\u202e")


def test_control_characters_are_escaped(store_url: str) -> None:
    cell = "cell\x1b]0;title\x07"
    with ObservationStore.open(store_url) as store:
        s = store.session("s\x1b[2J")
        s.create_cell(cell)
        s.begin(cell, 0)
        s.record(cell, 0, Outcome.completed([TextItem(HOSTILE + "\nnext\tline")], error_text=HOSTILE))
    session = "s\x1b[2J"
    outputs = [
        run(["--db", store_url, "show", session, cell]).stdout,
        run(["--db", store_url, "cells"]).stdout,
        run(["--db", store_url, "sessions"]).stdout,
        run(["--db", store_url, "history", session, cell]).stdout,
        run(["--db", store_url, "release", session, cell, "0"]).stdout,
        run(["--db", store_url, "show", session, "other\x1b[31m"], 1).stderr,
    ]
    for out in outputs:
        for char in RAW_CONTROLS:
            assert char not in out, (char, out)
    # Ids are quoted as in error lines: one escape, not a repr of an escape.
    assert "session 's\\x1b[2J', cell 'cell\\x1b]0;title\\x07', generation 0: released" in outputs[4]
    shown = outputs[0]
    assert "red\\x1b[31mALERT\\x07 back\\b cr\\roverwrite csi\\x9b2J rtl\\u202eevil" in shown
    assert "\nnext\tline" in shown.replace("    ", "")  # a text item keeps its layout


def test_json_output_is_plain_json_escaping(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        s = store.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.completed([TextItem(HOSTILE)]))
    out = run(["--db", store_url, "show", "s", "c", "--json"]).stdout
    for char in RAW_CONTROLS:
        assert char not in out
    assert json.loads(out)["content_items"][0]["text"] == HOSTILE


# -- the installed executable ---------------------------------------------------------------------------


def test_the_installed_executable(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("codemode-store")
    if not script.exists():
        pytest.skip(f"codemode-store is not installed next to {sys.executable} (run: pip install .)")
    path = tmp_path / "host.db"
    with ObservationStore.open(path) as store:
        store.session("s").create_cell("c")
    done = subprocess.run(
        [str(script), "--db", str(path), "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert (stats["sessions"], stats["cells"], stats["schema_revision"]) == (1, 1, HEAD_REVISION)
    failed = subprocess.run(
        [str(script), "--db", str(tmp_path / "missing.db"), "cells"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: no store at") and "Traceback" not in failed.stderr


@pytest.mark.parametrize(
    ("url", "media_type", "size", "problem"),
    [
        ("data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" * 50).decode(), "image/jpeg", 100, None),
        ("data:image/svg+xml,%3Csvg%2F%3E", "image/svg+xml", len(b"<svg/>"), None),
        ("data:image/png;base64,@@not base64@@", "image/png", None, "invalid base64 data"),
        ("data:image/png;base64", None, None, "data URL without a comma"),
        ("https://example.com/cat.png", None, None, None),
    ],
)
def test_image_summaries(url: str, media_type: str | None, size: int | None, problem: str | None) -> None:
    summary = summarise_image(ImageItem(url, "auto"))
    assert (summary.media_type, summary.decoded_bytes, summary.problem, summary.detail) == (
        media_type,
        size,
        problem,
        "auto",
    )
    assert summary.url == (url if url.startswith("https:") else None)


# -- gc, check and vacuum ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["gc", "--older-than", "7d"], "purging idle sessions"),
        (["check"], "re-hashing payloads"),
        (["vacuum"], "reclaiming free pages"),
    ],
)
def test_cli_progress_bar_only_on_a_terminal_and_never_with_json(
    aged_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], label: str
) -> None:
    assert label not in cli(["--db", aged_url, *args]).output  # not a terminal: quiet
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    assert label not in cli(["--db", aged_url, *args, "--json"]).output
    assert label in cli(["--db", aged_url, *args]).output


@pytest.mark.parametrize("args", [["gc", "--older-than", "7d"], ["check"], ["vacuum"]])
def test_cli_maintenance_never_creates_a_store(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    result = cli(["--db", str(missing), *args], 1)
    assert result.stderr.startswith("error: ")
    assert not missing.exists()


# -- a newcomer's friction (issue 21) -------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["show", "s", "c", "x"], ["show", "s", "c", "-1"], ["release", "s", "c", "x"]]
)
def test_a_usage_error_calls_the_generation_gen_whether_or_not_it_is_optional(
    tmp_path: Path, args: list[str]
) -> None:
    result = cli(["--db", str(tmp_path / "x.db"), *args], code=2)
    assert "Invalid value for 'GEN':" in result.stderr and "[GEN]" not in result.stderr


def test_a_folder_given_as_the_database_is_named_a_directory_by_every_tool(tmp_path: Path) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    said = f"'{folder}' is a directory, not a database file: name a file in it"
    with pytest.raises(errors.NotADatabase, match=re.escape(said)):
        ObservationStore.open(folder)
    for args in (["cells"], ["db", "upgrade"], ["demo"]):
        result = cli(["--db", str(folder), *args], code=1)
        assert "is a directory, not a database file" in result.stderr, (args, result.stderr)
    host = subprocess.run(
        [sys.executable, "-m", "codemode_store.host", "--db", str(folder)],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    assert host.returncode == 1 and said in host.stderr
    assert list(folder.iterdir()) == []  # nothing was written into it


def test_a_postgresql_url_without_the_driver_names_the_extra_to_install(tmp_path: Path) -> None:
    # A base install: psycopg cannot be imported (a None in sys.modules makes its import fail).
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from codemode_store import ObservationStore, DatabaseError\n"
        "try:\n"
        "    ObservationStore.open('postgresql+psycopg://u@127.0.0.1:1/x')\n"
        "except DatabaseError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'codemode-store[postgres]'" in done.stdout, done.stdout


def test_db_upgrade_to_an_older_revision_is_refused_not_ignored(tmp_path: Path) -> None:
    from codemode_store import migrate

    db = str(tmp_path / "store.db")
    oldest = migrate.history()[-1][0]
    assert oldest != migrate.HEAD_REVISION
    cli(["--db", db, "db", "upgrade"])
    for older in ([oldest], ["base"], ["--", "-1"]):
        result = cli(["--db", db, "db", "upgrade", *older], code=2)
        assert f"older than the store's revision {migrate.HEAD_REVISION}" in result.stderr
    assert cli(["--db", db, "db", "current"]).stdout.startswith(migrate.HEAD_REVISION)
    # Going up still works, and asking for the revision it is at says so.
    fresh = str(tmp_path / "fresh.db")
    cli(["--db", fresh, "db", "upgrade", oldest])
    assert "upgraded from revision" in cli(["--db", fresh, "db", "upgrade"]).stdout
    assert "already at" in cli(["--db", fresh, "db", "upgrade", migrate.HEAD_REVISION]).stdout
