"""``codemode-store demo``: it runs, says what happened, and the database agrees."""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli import main
from codemode_store import ObservationStore
from codemode_store.cli_support.demo import DEFAULT_DEMO_DB, INTERRUPTED, SESSION, chart_outcome
from codemode_store.observation import Observation
from codemode_store.wire import encode_payload


def run_demo(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def everything(path: Path) -> dict[tuple[str, int], Observation]:
    with ObservationStore.open(path) as store:
        s = store.session(SESSION)
        return {(o.cell_id, o.generation): o for c in s.cells() for o in s.history(c.cell_id)}


def test_the_demo_states_what_the_database_shows(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    result = run_demo("demo", "--db", str(path))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    rows = everything(path)

    # The chart the killed host recorded came back byte for byte, then was released.
    chart = rows[("chart", 0)]
    expected_sha = hashlib.sha256(encode_payload(chart_outcome())).hexdigest()
    assert chart.payload_sha256 == expected_sha
    assert (chart.state, chart.kind) == ("released", "completed")
    assert "byte for byte the same" in out
    assert out.count(expected_sha[:16]) == 2  # recorded by the killed host; replayed by the new one

    # The host really was killed, while generation 2 of "train" was pending.
    if sys.platform != "win32":
        assert "(SIGKILL) mid-observation" in out
    assert "pending() -> 1 observation(s); fail_pending() -> 1 marked failed" in out
    assert 'begin("train", 2) -> state "failed"' in out and INTERRUPTED in out
    interrupted = rows[("train", 2)]
    # Its tombstone keeps the size and hash of the failure text it held.
    assert interrupted.payload_sha256 == hashlib.sha256(INTERRUPTED.encode()).hexdigest()
    assert (interrupted.state, interrupted.kind, interrupted.payload_bytes) == (
        "released",
        None,
        len(INTERRUPTED),
    )
    assert (rows[("train", 3)].state, rows[("train", 3)].kind) == ("retained", "missing")

    # Acknowledgements turned payloads into tombstones; the final stats say so.
    tombstones = [key for key, o in rows.items() if o.state == "released"]
    assert len(tombstones) == len(rows) - 1
    assert all(rows[key].released_at is not None and rows[key].payload_sha256 for key in tombstones)
    assert re.search(rf"^  released\s+{len(tombstones)} \(tombstones\)$", out, re.MULTILINE)
    assert re.search(r"^  pending\s+0$", out, re.MULTILINE)
    assert "AlreadyReleased" in out


def test_each_step_fits_on_a_screen(tmp_path: Path) -> None:
    out = run_demo("demo", "--db", str(tmp_path / "demo.db")).stdout
    steps = re.split(r"^=== Step \d+ of \d+: .* ===$", out, flags=re.MULTILINE)
    assert len(steps) == 7  # the introduction and six steps
    for text in steps:
        assert len(text.strip("\n").splitlines()) <= 24, text


def test_every_run_starts_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    assert run_demo("demo", "--db", str(path)).exit_code == 0
    first = {key: (o.state, o.kind, o.payload_sha256) for key, o in everything(path).items()}
    assert run_demo("--db", str(path), "demo").exit_code == 0  # --db before the command counts too
    second = {key: (o.state, o.kind, o.payload_sha256) for key, o in everything(path).items()}
    assert second == first


def test_the_demo_never_empties_a_real_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "host.db"
    with ObservationStore.open(real) as store:
        store.session("thread-1").create_cell("cell-1")
    before = real.read_bytes()
    result = run_demo("demo", "--db", str(real))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "choose another file" in result.stderr
    assert real.read_bytes() == before

    # CODEMODE_STORE_URL names a host's store: the demo plays on its own default file.
    monkeypatch.chdir(tmp_path)
    assert run_demo("demo", env={"CODEMODE_STORE_URL": str(real)}).exit_code == 0
    assert (tmp_path / DEFAULT_DEMO_DB).exists()
    assert real.read_bytes() == before


def test_the_demo_wants_a_file(tmp_path: Path) -> None:
    result = run_demo("demo", "--db", "postgresql+psycopg://u@localhost/db")
    assert result.exit_code == 2


def test_a_folder_that_does_not_exist_fails_before_any_output(tmp_path: Path) -> None:
    path = tmp_path / "nonexistent" / "x.db"
    result = run_demo("demo", "--db", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: cannot write the demo's database {path}: the folder {path.parent} does not exist\n"
    )
    assert not path.parent.exists()


def look_around(out: str) -> list[list[str]]:
    """Return the commands the demo prints at its end, split as a shell would."""
    tail = out.split("Look around", 1)[1].splitlines()[1:]
    return [shlex.split(line.split("#")[0]) for line in tail if line.startswith("  ")]


def test_the_look_around_commands_work_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("CODEMODE_STORE_URL", raising=False)
    out = run_demo("demo", "--db", "relative.db").stdout
    assert f"The demo's database: {here / 'relative.db'}\n" in out
    commands = look_around(out)
    assert len(commands) == 4
    monkeypatch.chdir(elsewhere)
    for words in commands:
        assert words[:3] == ["codemode-store", "--db", str(here / "relative.db")]
        result = CliRunner().invoke(main, words[1:])
        assert result.exit_code == 0, (words, result.stderr)
        assert result.stdout.strip()
    assert list(elsewhere.iterdir()) == []


def test_the_printed_command_is_a_full_path_when_the_shell_would_not_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "venv dir" / "bin"  # a space: the printed path must be quoted
    bin_dir.mkdir(parents=True)
    script = bin_dir / "codemode-store"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (bin_dir / "activate").write_text("")
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = run_demo("demo", "--db", str(tmp_path / "d.db")).stdout
    commands = look_around(out)
    assert commands and all(words[0] == str(script) for words in commands)
    assert f"(or activate the environment first: source {shlex.quote(str(bin_dir / 'activate'))})" in out

    monkeypatch.setenv("PATH", str(bin_dir))
    out = run_demo("demo", "--db", str(tmp_path / "d.db")).stdout
    assert all(words[0] == "codemode-store" for words in look_around(out))
    assert "activate" not in out
