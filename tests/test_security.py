"""Security: private files, no SQL built from values, no password printed, no terminal injection.

See docs/security.md for what the store does and does not protect against.
"""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli import main
from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
from codemode_store.engine import build_engine, to_url
from codemode_store.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment of a child process running this checkout."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# -- files are private from their creation -------------------------------------------------------------------

# Opens a store under umask 0 and reports the modes of the file, its WAL and SHM while open.
UMASK_CHILD = """
import asyncio, json, os, stat, sys
from pathlib import Path
os.umask(0)
from codemode_store import ObservationStore
def modes(path):
    return {suffix: oct(stat.S_IMODE(os.stat(str(path) + suffix).st_mode))
            for suffix in ("", "-wal", "-shm") if os.path.exists(str(path) + suffix)}
folder = Path(sys.argv[1])
result = {}
with ObservationStore.open(folder / "sync.db") as store:
    store.session("s").create_cell("c")
    with store.engine.connect():
        result["sync"] = modes(folder / "sync.db")
try:
    from codemode_store.aio import AsyncObservationStore
except ImportError:
    pass
else:
    async def run_async():
        async with AsyncObservationStore.open(folder / "async.db") as store:
            await store.session("s").create_cell("c")
            async with store.engine.connect():
                return modes(folder / "async.db")
    try:
        result["async"] = asyncio.run(run_async())
    except ImportError:
        pass
print(json.dumps(result))
"""


def test_new_files_are_0600_even_under_umask_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UMASK_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sync"] == {"": "0o600", "-wal": "0o600", "-shm": "0o600"}
    for modes in result.values():
        assert set(modes.values()) == {"0o600"}, result
    # The files a test of this module did not make itself are as private.
    assert stat.S_IMODE((tmp_path / "sync.db").stat().st_mode) == 0o600


def test_the_cli_creates_a_private_store_under_umask_0(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    done = subprocess.run(
        [
            "sh",
            "-c",
            'umask 0 && exec "$0" "$@"',
            sys.executable,
            str(ROOT / "cli.py"),
            "--db",
            str(path),
            "db",
            "upgrade",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        not (tmp_path / "cli.db-wal").exists()
        or stat.S_IMODE((tmp_path / "cli.db-wal").stat().st_mode) == 0o600
    )


# -- no SQL text built from values -------------------------------------------------------------------------

SCANNED = sorted([*ROOT.glob("codemode_store/*.py"), ROOT / "cli.py", *ROOT.glob("migrations/**/*.py")])
SQL_CALLS = {"text", "exec_driver_sql", "execute", "executemany", "executescript"}

#: The formatted SQL the package may hold: (file, source of the argument) -> why it is safe.
ALLOWED = {
    ("codemode_store/engine.py", 'f"PRAGMA busy_timeout = {timeout_ms}"'): "int() of the busy_timeout option",
    ("codemode_store/engine.py", 'f"PRAGMA synchronous = {synchronous}"'): "one of two literals",
    ("codemode_store/space.py", 'f"PRAGMA {name}"'): "every _pragma() call passes a literal name",
}


def _is_formatted(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        sides = (node.left, node.right)
        has_text = any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in sides)
        return has_text and not all(isinstance(side, ast.Constant) for side in sides)
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "format_map", "join")
    )


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def formatted_sql(source: str, name: str) -> list[tuple[str, str]]:
    """Return (name, source) of each SQL call argument built by formatting, directly or via a variable."""
    tree = ast.parse(source)
    formatted_names = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        and node.value is not None
        and _is_formatted(node.value)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _callee(node) in SQL_CALLS and node.args):
            continue
        argument = node.args[0]
        if _is_formatted(argument) or (isinstance(argument, ast.Name) and argument.id in formatted_names):
            segment = ast.get_source_segment(source, argument) or ast.dump(argument)
            found.append((argument.lineno, argument.col_offset, segment))
    return [(name, segment) for _line, _col, segment in sorted(found)]


def test_no_sql_is_built_by_formatting_values() -> None:
    found = [
        item
        for path in SCANNED
        for item in formatted_sql(path.read_text(), path.relative_to(ROOT).as_posix())
    ]
    unexpected = [item for item in found if item not in ALLOWED]
    assert unexpected == [], "SQL built by string formatting: use bind parameters"
    # The allow-list names only what is there: a fix that removes one shrinks it.
    assert set(found) == set(ALLOWED)


def test_the_scan_finds_formatted_sql() -> None:
    code = (
        "def f(conn, name, n):\n"
        "    conn.execute(text(f'SELECT * FROM t WHERE a = {name}'))\n"
        "    conn.exec_driver_sql('DELETE FROM t WHERE a = %s' % name)\n"
        "    query = 'SELECT {}'.format(n)\n"
        "    conn.execute(query)\n"
        "    conn.execute('SELECT 1 WHERE a = ' + name)\n"
        "    conn.execute(text('SELECT 1 WHERE a = :a'), {'a': name})\n"
        "    conn.execute(text('SELECT ' 'constant'))\n"
    )
    assert [segment for _name, segment in formatted_sql(code, "sample")] == [
        "f'SELECT * FROM t WHERE a = {name}'",
        "'DELETE FROM t WHERE a = %s' % name",
        "query",
        "'SELECT 1 WHERE a = ' + name",
    ]


def test_the_allowed_pragmas_take_no_outside_value() -> None:
    tree = ast.parse((ROOT / "codemode_store" / "space.py").read_text())
    pragma_calls = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and _callee(node) == "_pragma"
    ]
    assert pragma_calls
    for call in pragma_calls:
        name = call.args[1]
        assert isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value.isidentifier()
    engine = (ROOT / "codemode_store" / "engine.py").read_text()
    assert "timeout_ms = int(" in engine
    assert 'synchronous = "FULL" if durability == "full" else "NORMAL"' in engine


# -- credentials are never printed ----------------------------------------------------------------------

SECRET = "S3cr3tPassw0rd"
SECRET_URLS = [
    pytest.param(f"postgresql+psycopg://host_user:{SECRET}@127.0.0.1:1/codemode", id="plain"),
    pytest.param(f"postgresql+psycopg://host_user:{SECRET}%40x@127.0.0.1:1/codemode", id="percent-encoded"),
]
EVERY_COMMAND = [
    ["sessions"],
    ["cells", "--json"],
    ["history", "s", "c"],
    ["show", "s", "c", "0", "--json"],
    ["release", "s", "c", "0"],
    ["end-session", "s"],
    ["stats", "--json"],
    ["gc", "--older-than", "1d"],
    ["check"],
    ["vacuum"],
    ["db", "current"],
    ["db", "upgrade"],
    ["db", "history"],
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_no_command_prints_the_password(url: str) -> None:
    pytest.importorskip("psycopg")
    for args in EVERY_COMMAND:
        for how in ("--db", "environment"):
            if how == "--db":
                result: Result = CliRunner().invoke(main, ["--db", url, *args])
            else:
                result = CliRunner().invoke(main, args, env={"CODEMODE_STORE_URL": url})
            assert SECRET not in result.stdout + result.stderr, args
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            if args != ["db", "history"]:  # lists this version's revisions: no connection needed
                assert result.exit_code == 1, (args, result.stderr)


def test_the_real_executable_does_not_print_the_password() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://host_user:{SECRET}@127.0.0.1:1/codemode"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "cells"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**child_env(), "CODEMODE_STORE_URL": url},
        check=False,
    )
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_the_api_does_not_put_the_password_in_errors_or_repr() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://host_user:{SECRET}@127.0.0.1:1/codemode"
    with pytest.raises(StoreError) as caught:
        ObservationStore.open(url, busy_timeout=1)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    store = ObservationStore(build_engine(to_url(url)))
    try:
        assert SECRET not in repr(store)
        with pytest.raises(StoreError) as caught:
            store.cells()
        assert SECRET not in str(caught.value)
    finally:
        store.close()


# -- control characters never reach the terminal raw -------------------------------------------------------

HOSTILE = "a\x1b[2Jb\x1b]0;title\x07c\rd\x9b31me\x85f\x90g\x9dh\x7fi\u202ej"
RAW = ("\x1b", "\x07", "\r", "\x9b", "\x85", "\x90", "\x9d", "\x7f", "\u202e")
SESSION = "s" + HOSTILE
CELL = "c" + HOSTILE


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A store whose ids and payloads carry terminal controls, in a folder whose name does too."""
    folder = tmp_path / f"dir{HOSTILE.replace(chr(0), '')}"
    folder.mkdir()
    path = folder / "store.db"
    with ObservationStore.open(path) as store:
        s = store.session(SESSION)
        s.create_cell(CELL)
        s.begin(CELL, 0)
        s.record(
            CELL,
            0,
            Outcome.yielded(
                [
                    TextItem(HOSTILE),
                    ImageItem("https://example.invalid/" + HOSTILE),
                    ImageItem(f"data:image/{HOSTILE};base64,AAAA", "low"),
                ]
            ),
        )
        s.begin(CELL, 1)
        s.record(CELL, 1, Outcome.completed([TextItem("done")], error_text=HOSTILE))
        s.create_cell("failed" + HOSTILE)
        s.begin("failed" + HOSTILE, 0)
        s.fail("failed" + HOSTILE, 0, HOSTILE)
    return path


SURFACES = {
    "show text and images": ["show", SESSION, CELL, "0"],
    "show error_text": ["show", SESSION, CELL, "1"],
    "show failure": ["show", SESSION, "failed" + HOSTILE],
    "history": ["history", SESSION, CELL],
    "cells": ["cells"],
    "cells --session": ["cells", "--session", SESSION],
    "sessions": ["sessions"],
    "stats (path)": ["stats"],
    "release": ["release", SESSION, CELL, "1"],
    "gc dry run": ["gc", "--older-than", "1s", "--dry-run"],
    "show --json": ["show", SESSION, CELL, "0", "--json"],
    "history --json": ["history", SESSION, CELL, "--json"],
    "cells --json": ["cells", "--json"],
    "unknown cell error": ["show", SESSION, "nope" + HOSTILE],
    "bad generation error": ["show", SESSION, CELL, "9"],
    "no-outcome error": ["show", SESSION, "failed" + HOSTILE, "0", "--json"],
    "end-session": ["end-session", SESSION],
}


@pytest.mark.parametrize("args", SURFACES.values(), ids=list(SURFACES))
def test_control_characters_are_escaped_everywhere(hostile: Path, args: list[str]) -> None:
    if args[0] == "gc":
        time.sleep(1.1)  # so that the session is idle for longer than the age given
    result = CliRunner().invoke(main, ["--db", str(hostile), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    output = result.stdout + result.stderr
    if args[0] != "history" or "--json" in args:  # the history table shows no ids or payloads
        assert "\\x1b" in output or "\\u001b" in output, output  # the hostile text is shown, escaped
    for char in RAW:
        assert char not in output, (char, output)


def test_paths_and_corrupt_rows_are_escaped(hostile: Path) -> None:
    missing = hostile.with_name("missing\x1b[31m.db")
    result = CliRunner().invoke(main, ["--db", str(missing), "cells"])
    assert result.exit_code == 1 and "\x1b" not in result.stderr and "\\x1b" in result.stderr
    conn = sqlite3.connect(hostile)
    try:
        with conn:
            conn.execute("UPDATE observations SET payload_sha256 = ? WHERE state = 'retained'", (bytes(32),))
    finally:
        conn.close()
    result = CliRunner().invoke(main, ["--db", str(hostile), "check"])
    assert result.exit_code == 1 and "corrupt" in result.stdout
    for char in RAW:
        assert char not in result.stdout + result.stderr, char
