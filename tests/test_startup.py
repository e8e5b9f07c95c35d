"""Start-up: what importing the package and running light commands loads (issue 15, target 5).

Whole processes, inspected through ``sys.modules``: no timing is asserted here
(``benchmarks/cli_startup.py`` measures the times).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli
import codemode_store
from codemode_store import ObservationStore, validation
from codemode_store.cli_support import demo

ROOT = Path(__file__).resolve().parent.parent

_REPORT = """
import json, sys
report = sys.argv[1]
try:
    {body}
except SystemExit:
    pass
with open(report, "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def loaded_after(body: str, tmp_path: Path, *argv: str) -> set[str]:
    """Run ``body`` in a fresh interpreter from the checkout; return the top-level packages it loaded."""
    report = tmp_path / "modules.json"
    code = _REPORT.format(body=body)
    done = subprocess.run(
        [sys.executable, "-c", code, str(report), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in json.loads(report.read_text())}


def test_importing_the_package_loads_neither_sqlalchemy_nor_alembic(tmp_path: Path) -> None:
    loaded = loaded_after("import codemode_store", tmp_path)
    assert "codemode_store" in loaded
    assert not loaded & {"sqlalchemy", "alembic"}


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_load_no_sqlalchemy(tmp_path: Path, option: str) -> None:
    body = f"sys.argv = ['codemode-store', {option!r}]; import cli; cli.main()"
    loaded = loaded_after(body, tmp_path)
    assert {"cli", "click"} <= loaded
    # shutil (with the compressors it imports) only measured the terminal for click.
    assert not loaded & {"sqlalchemy", "alembic", "shutil"}


def test_a_usage_error_loads_no_sqlalchemy(tmp_path: Path) -> None:
    body = "sys.argv = ['codemode-store', 'show', 's', 'c', '-1']; import cli; cli.main()"
    assert not loaded_after(body, tmp_path) & {"sqlalchemy", "alembic"}


def test_reading_a_store_at_head_loads_no_alembic(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    ObservationStore.open(path).close()
    for command in ("stats", "cells"):
        body = f"sys.argv = ['codemode-store', '--db', {str(path)!r}, {command!r}]; import cli; cli.main()"
        loaded = loaded_after(body, tmp_path)
        assert "sqlalchemy" in loaded
        assert "alembic" not in loaded, command


def test_migrating_still_loads_alembic(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    body = f"sys.argv = ['codemode-store', '--db', {str(path)!r}, 'db', 'upgrade']; import cli; cli.main()"
    assert "alembic" in loaded_after(body, tmp_path)
    assert path.exists()


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in codemode_store.__all__:
        assert getattr(codemode_store, name) is not None, name
    assert set(codemode_store.__all__) <= set(dir(codemode_store))
    assert codemode_store.ObservationStore.__module__ == "codemode_store.store"
    with pytest.raises(AttributeError, match="no_such_name"):
        codemode_store.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_the_cli_copies_of_library_constants_agree() -> None:
    # The CLI keeps its own copies so as not to import these modules at start.
    assert cli.MAX_GENERATION == validation.MAX_GENERATION
    assert cli.DEFAULT_DEMO_DB == demo.DEFAULT_DEMO_DB
    assert cli.DEFAULT_DB == demo.DEFAULT_DB
