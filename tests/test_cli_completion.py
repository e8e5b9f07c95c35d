"""Shell completion of session and cell ids from the store (issue 11, item 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from codemode_store import ObservationStore


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """Return what bash completion offers for the last word of ``words`` (click's protocol)."""
    line = f"codemode-store {words}"
    environment = {
        "_CODEMODE_STORE_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(line.split()) - (0 if line.endswith(" ") else 1)),
        **(env or {}),
    }
    result = CliRunner().invoke(main, [], env=environment, prog_name="codemode-store")
    assert result.exit_code == 0, (result.output, result.exception)
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line.startswith("plain,")]


@pytest.fixture
def url(store_url: str) -> str:
    """Sessions thread-1 (cells a1, a2, b1), thread-2 (cell z) and other."""
    with ObservationStore.open(store_url) as store:
        for session, cells in (("thread-1", ["a1", "a2", "b1"]), ("thread-2", ["z"]), ("other", ["o"])):
            for cell in cells:
                store.session(session).create_cell(cell)
    return store_url


def test_session_ids_complete_from_the_store(url: str) -> None:
    assert complete(f"--db {url} history ") == ["other", "thread-1", "thread-2"]
    assert complete(f"--db {url} history thr") == ["thread-1", "thread-2"]
    assert complete(f"--db {url} end-session thread-2") == ["thread-2"]
    assert complete(f"--db {url} cells --session o") == ["other"]
    assert complete(f"--db {url} show x") == []


def test_cell_ids_complete_within_the_session_given(url: str) -> None:
    assert complete(f"--db {url} history thread-1 ") == ["a1", "a2", "b1"]
    assert complete(f"--db {url} show thread-1 a") == ["a1", "a2"]
    assert complete(f"--db {url} release thread-2 ") == ["z"]
    assert complete(f"--db {url} history nobody ") == []


def test_the_store_may_be_named_after_the_command_or_by_the_environment(url: str) -> None:
    assert complete(f"history --db {url} thread-1 b") == ["b1"]
    assert complete("history thread-1 a", env={"CODEMODE_STORE_URL": url}) == ["a1", "a2"]


def test_completion_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert complete(f"--db {missing} history ") == []
    assert not missing.exists()
