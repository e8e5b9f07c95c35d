"""The command line's guard rails (issue 11): where ``--db`` goes, errors that name the
database, confirmations, strict numbers, one-line usage errors, help that stands alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from support.tables import dump

import cli as cli_module
from cli import main
from codemode_store import ObservationStore, Outcome, TextItem

NOT_A_DATABASE = b"this is not a database file at all" * 200


def run(args: list[str], code: int = 0, **kwargs: Any) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped unhandled."""
    result = CliRunner().invoke(main, args, **kwargs)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def error_line(result: Result) -> str:
    """Return the one ``error:`` line of a failed command (nothing else on stderr, no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def url(store_url: str) -> str:
    """A store with session s (cell c: generation 0 completed) and session t (cell d, pending)."""
    with ObservationStore.open(store_url) as store:
        s = store.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.completed([TextItem("done")]))
        t = store.session("t")
        t.create_cell("d")
        t.begin("d", 0)
    return store_url


def rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    with ObservationStore.open(url) as store:
        return dump(store)


def sessions_of(url: str) -> set[str]:
    with ObservationStore.open(url) as store:
        return {c.session_id for c in store.cells()}


# -- --db before or after the command name (item 14) -----------------------------------------------------

AFTER = [
    ["sessions"],
    ["cells"],
    ["history", "s", "c"],
    ["show", "s", "c"],
    ["show", "s", "c", "0"],
    ["stats"],
    ["check"],
    ["db", "current"],
    ["db", "history"],
]


@pytest.mark.parametrize("args", AFTER, ids=" ".join)
def test_db_after_the_command_name_is_the_same_as_before_it(url: str, args: list[str]) -> None:
    before = run(["--db", url, *args]).stdout
    assert run([*args, "--db", url]).stdout == before
    if args[0] == "db":
        assert run(["db", "--db", url, *args[1:]]).stdout == before


def test_db_after_the_command_name_writes_too(url: str) -> None:
    assert "released" in run(["release", "s", "c", "0", "--db", url]).stdout
    assert "ended" in run(["end-session", "s", "--db", url]).stdout
    assert sessions_of(url) == {"t"}


def test_db_after_the_command_name_wins(url: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    assert json.loads(run(["--db", missing, "stats", "--json", "--db", url]).stdout)["sessions"] == 2
    env = {"CODEMODE_STORE_URL": missing}
    assert json.loads(run(["stats", "--db", url, "--json"], env=env).stdout)["sessions"] == 2
    assert not Path(missing).exists()


def test_every_command_but_demo_takes_db_after_its_name() -> None:
    def walk(group: click.Group, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = []
        for name, command in group.commands.items():
            found.append((*prefix, name))
            if isinstance(command, click.Group):
                found.extend(walk(command, (*prefix, name)))
        return found

    for path in walk(main, ()):
        if path == ("demo",):
            continue  # its --db is the file it plays on
        assert "--db PATH_OR_URL" in run([*path, "--help"]).stdout, path


# -- errors about the database name it and its source (item 5) --------------------------------------------


def test_not_a_database_names_the_file_and_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(NOT_A_DATABASE)
    line = error_line(run(["--db", str(junk), "stats"], 1))
    assert line == f"error: database {junk} (from --db): file is not a database"
    line = error_line(run(["cells", "--db", str(junk)], 1))
    assert line == f"error: database {junk} (from --db): file is not a database"
    line = error_line(run(["stats"], 1, env={"CODEMODE_STORE_URL": str(junk)}))
    assert line == f"error: database {junk} (from CODEMODE_STORE_URL): file is not a database"
    assert junk.read_bytes() == NOT_A_DATABASE


def test_no_store_names_the_path_and_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.db"
    line = error_line(run(["--db", str(missing), "cells"], 1))
    assert line == f"error: no store at {missing} (from --db); create one with `codemode-store db upgrade`"
    line = error_line(run(["cells"], 1, env={"CODEMODE_STORE_URL": str(missing)}))
    assert f"no store at {missing} (from CODEMODE_STORE_URL)" in line
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CODEMODE_STORE_URL", raising=False)
    line = error_line(run(["cells"], 1))
    assert line == (
        "error: no store at codemode-store.db (the default: no --db given and CODEMODE_STORE_URL unset); "
        "create one with `codemode-store db upgrade`"
    )
    # Where the demo left its database, the error says how to reach it.
    ObservationStore.open(tmp_path / "codemode-store-demo.db").close()
    assert error_line(run(["cells"], 1)).endswith(
        "; the demo's database is here: --db codemode-store-demo.db"
    )
    assert not (tmp_path / "codemode-store.db").exists()


def test_a_bad_url_is_named_with_its_source() -> None:
    for args in (["stats"], ["db", "upgrade"], ["cells", "--limit", "1"]):
        line = error_line(run(["--db", "nosuchdialect://u:Secret123@h/db", *args], 1))
        assert "'nosuchdialect://u:***@h/db' (from --db)" in line, line
        assert "Secret123" not in line


def test_a_database_from_a_newer_version_is_named(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    ObservationStore.open(path).close()
    with ObservationStore.open(path) as store, store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    line = error_line(run(["cells", "--db", str(path)], 1))
    assert line.startswith(f"error: database {path} (from --db): ") and "'9999'" in line


def test_an_unreachable_server_is_named_without_its_password() -> None:
    url = "postgresql+psycopg://alice:Pa55wordXYZ@127.0.0.1:1/codemode"
    for args in (["stats"], ["db", "current"], ["cells", "--limit", "5"]):
        result = run(["--db", url, *args], 1)
        line = error_line(result)
        assert "Pa55wordXYZ" not in result.stdout + result.stderr
        assert "postgresql+psycopg://alice:***@127.0.0.1:1/codemode (from --db)" in line, line
    line = error_line(run(["stats"], 1, env={"CODEMODE_STORE_URL": url}))
    assert "alice:***@127.0.0.1:1/codemode (from CODEMODE_STORE_URL)" in line


# -- end-session of a session the store does not hold (item 7) ------------------------------------------


def test_end_session_of_an_unknown_session_is_exit_1_and_changes_nothing(url: str) -> None:
    before = rows(url)
    line = error_line(run(["--db", url, "end-session", "nobody"], 1))
    assert line == "error: session 'nobody': no such session in the store"
    assert rows(url) == before
    with ObservationStore.open(url) as store:
        assert store.end_session("nobody") == 0  # the API stays a no-op


# -- confirmation (item 16) ------------------------------------------------------------------------


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI see stdin as a terminal (CliRunner feeds it from ``input``)."""
    monkeypatch.setattr(cli_module, "_stdin_is_terminal", lambda: True)


@pytest.mark.usefixtures("terminal")
def test_end_session_asks_on_a_terminal(url: str) -> None:
    before = rows(url)
    result = run(["--db", url, "end-session", "s"], 1, input="n\n")
    assert result.stdout.startswith("Delete session 's': 1 cell, 1 observation? [y/N]")
    assert error_line(result) == "error: not confirmed; nothing was changed"
    assert rows(url) == before
    result = run(["--db", url, "end-session", "s"], 1, input="\n")  # the default is no
    assert rows(url) == before
    result = run(["--db", url, "end-session", "s"], input="y\n")
    assert "ended; 1 observation(s) deleted" in result.stdout
    assert "Delete" not in run(["--db", url, "end-session", "t", "--yes"]).stdout
    assert sessions_of(url) == set()


def test_end_session_does_not_ask_off_a_terminal(url: str) -> None:
    result = run(["--db", url, "end-session", "s"], input="n\n")  # stdin is not a terminal
    assert result.stdout == "session 's': ended; 1 observation(s) deleted\n"


@pytest.mark.usefixtures("terminal")
def test_gc_asks_on_a_terminal_but_not_for_a_dry_run(aged_url: str) -> None:
    before = rows(aged_url)
    result = run(["--db", aged_url, "gc", "--older-than", "7d"], 1, input="n\n")
    assert "Purge every session idle for longer than 7 days, 0:00:00? [y/N]" in result.stdout
    assert rows(aged_url) == before
    assert "Purge" not in run(["--db", aged_url, "gc", "--older-than", "7d", "--dry-run"]).stdout
    assert rows(aged_url) == before
    assert "1 session idle" in run(["--db", aged_url, "gc", "--older-than", "7d"], input="y\n").stdout
    assert rows(aged_url) != before


def test_gc_does_not_ask_off_a_terminal(aged_url: str) -> None:
    assert "1 session idle" in run(["--db", aged_url, "gc", "--older-than", "7d"]).stdout


@pytest.mark.parametrize("age", ["0s", "0m", "59m", "3599s"])
def test_gc_under_an_hour_needs_yes_even_off_a_terminal(aged_url: str, age: str) -> None:
    before = rows(aged_url)
    result = run(["--db", aged_url, "gc", "--older-than", age], 2)
    assert "an age under one hour purges sessions that hosts may be using right now" in error_line(result)
    assert "--yes" in error_line(result)
    assert rows(aged_url) == before
    assert run(["--db", aged_url, "gc", "--older-than", age, "--dry-run"]).exit_code == 0
    assert rows(aged_url) == before
    assert run(["--db", aged_url, "gc", "--older-than", age, "--yes"]).exit_code == 0
    assert "old" not in sessions_of(aged_url)


def test_gc_of_an_hour_or_more_needs_no_yes(aged_url: str) -> None:
    assert run(["--db", aged_url, "gc", "--older-than", "1h"]).exit_code == 0
    assert run(["--db", aged_url, "gc", "--older-than", "60m"]).exit_code == 0


# -- ages and generations: plain, strict whole numbers (items 4 and 18) ----------------------------------

BAD_AGES = [
    ("3000000w", "reaches back before the year 1"),
    ("99999999999w", "is too large"),
    (str(10**30) + "s", "too large"),
    ("1_0d", "an age is a plain whole number"),
    ("-5m", "an age is a plain whole number"),
    ("+5m", "an age is a plain whole number"),
    (" 5m", "an age is a plain whole number"),
    ("\u0665m", "an age is a plain whole number"),  # an Arabic-Indic five
    ("5", "an age is a plain whole number"),
    ("5y", "an age is a plain whole number"),
    ("", "an age is a plain whole number"),
]


@pytest.mark.parametrize(("age", "words"), BAD_AGES)
def test_bad_ages_are_one_usage_line(aged_url: str, age: str, words: str) -> None:
    before = rows(aged_url)
    for extra in ([], ["--dry-run"], ["--yes"]):
        result = run(["--db", aged_url, "gc", "--older-than", age, *extra], 2)
        line = error_line(result)
        assert words in line and "timedelta" not in line and "(see: " in line, line
        assert result.stdout == ""
    assert rows(aged_url) == before


BAD_GENERATIONS = [
    (["show", "s", "c", "-1"], "'-1' is not a generation"),
    (["release", "s", "c", "-1"], "'-1' is not a generation"),
    (["release", "s", "c", "-0"], "'-0' is not a generation"),
    (["show", "s", "c", "1_0"], "'1_0' is not a generation"),
    (["release", "s", "c", "1_0"], "'1_0' is not a generation"),
    (["show", "s", "c", "+1"], "'+1' is not a generation"),
    (["show", "s", "c", " 1"], "' 1' is not a generation"),
    (["show", "s", "c", "\u0661"], "is not a generation"),  # int() reads an Arabic-Indic one
    (["show", "s", "c", "1.0"], "'1.0' is not a generation"),
    (["show", "s", "c", "0x1"], "'0x1' is not a generation"),
    (["show", "s", "c", str(2**63)], "out of range"),
    (["release", "s", "c", "x"], "'x' is not a generation"),
]


@pytest.mark.parametrize(
    ("args", "words"), BAD_GENERATIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_generations_are_plain_whole_numbers(url: str, args: list[str], words: str) -> None:
    before = rows(url)
    line = error_line(run(["--db", url, *args], 2))
    assert words in line and "plain whole number from 0 to 9223372036854775807" in line, line
    assert rows(url) == before


def test_leading_zeros_are_still_the_number(url: str) -> None:
    assert (
        run(["--db", url, "show", "s", "c", "00"]).stdout == run(["--db", url, "show", "s", "c", "0"]).stdout
    )


def test_a_session_id_that_starts_with_a_dash_goes_after_two_dashes(store_url: str) -> None:
    with ObservationStore.open(store_url) as store:
        store.session("-1").create_cell("c")
    assert run(["--db", store_url, "history", "--", "-1", "c"]).stdout == "(no observations)\n"


# -- usage errors and help -------------------------------------------------------------------------

USAGE_ERRORS = [
    ["no-such-command"],
    ["sessions", "--bogus"],
    ["history", "s"],
    ["release", "s", "c"],
    ["--db"],
    ["cells", "--db"],
    ["db", "nothing"],
    ["gc"],
    ["demo", "--db", "postgresql+psycopg://u@localhost/db"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_a_usage_error_is_one_line_that_points_to_the_help(url: str, args: list[str]) -> None:
    before = rows(url)
    result = run(args if args[0] == "--db" else ["--db", url, *args], 2)
    line = error_line(result)
    assert re.search(r"\(see: \S+( \S+)* --help\)$", line), line
    assert result.stdout == ""
    assert rows(url) == before


def test_no_arguments_still_shows_the_help() -> None:
    result = CliRunner().invoke(main, [])
    assert "Usage:" in result.output and "Commands:" in result.output


def _every_command(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend(_every_command(command, (*prefix, name)))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("command", _every_command(main), ids=lambda c: " ".join(c) or "main")
def test_help_never_sends_people_to_the_readme(command: tuple[str, ...]) -> None:
    text = run([*command, "--help"]).stdout
    assert "README" not in text and "SPEC" not in text


@pytest.mark.parametrize(("columns", "width"), [("60", 58), ("200", 78), ("", 78)])
def test_help_wraps_to_the_terminal_as_click_does(columns: str, width: int) -> None:
    text = run(["cells", "--help"], env={"COLUMNS": columns}).stdout
    lines = [line for line in text.splitlines() if "codemode-store " not in line]  # examples never wrap
    assert max(map(len, lines)) <= width
    assert max(map(len, lines)) > width - 12  # the width is used, not a narrower default


def test_the_main_help_says_what_the_readme_would() -> None:
    text = run(["--help"]).stdout
    for words in ("--format", "--limit", "Exit status", "CODEMODE_STORE_URL"):
        assert words in text, words


def test_the_demo_database_constant_is_the_demo_default() -> None:
    assert os.path.basename(cli_module.DEFAULT_DEMO_DB) == cli_module.DEFAULT_DEMO_DB
