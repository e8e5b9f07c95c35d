"""Without the ``async`` extra: the sync store works, and the asyncio front end names the extra.

Each case runs in a fresh interpreter whose import system refuses the extra's
modules (a ``sys.meta_path`` blocker), as if they were not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BLOCKER = """
import sys

missing = set(sys.argv[1].split(","))


class NotInstalled:
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def run_without(modules: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``modules`` cannot be imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["greenlet", "aiosqlite"])
def test_the_async_front_end_names_the_extra_to_install(module: str) -> None:
    done = run_without(module, "from codemode_store.aio import AsyncObservationStore")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: codemode_store.aio needs the async extra"), done.stderr
    assert f"{module} is missing" in last
    assert "install codemode-store[async]" in last
    assert "sqlalchemy[asyncio]" not in done.stderr


def test_the_blocker_makes_the_import_fail_as_a_missing_module_would() -> None:
    done = run_without("aiosqlite", "import aiosqlite")
    assert "ModuleNotFoundError: No module named 'aiosqlite'" in done.stderr


def test_the_sync_store_works_without_the_extra(tmp_path: Path) -> None:
    code = f"""
from codemode_store import ObservationStore, Outcome, TextItem

with ObservationStore.open({str(tmp_path / "host.db")!r}) as store:
    s = store.session("thread-1")
    s.create_cell("cell-1")
    s.begin("cell-1", 0)
    s.record("cell-1", 0, Outcome.completed([TextItem("done")]))
    print(s.get("cell-1", 0).outcome.content_items[0].text)
assert "greenlet" not in sys.modules and "aiosqlite" not in sys.modules
"""
    done = run_without("greenlet,aiosqlite", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
