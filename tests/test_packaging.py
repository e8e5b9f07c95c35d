"""The wheel: its file list, and a store opened from a fresh virtual environment."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import codemode_store

ROOT = Path(__file__).resolve().parent.parent

# Run inside the fresh environment, from a folder outside the checkout.
SMOKE = """
import sys
from pathlib import Path
import codemode_store
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.migrate import HEAD_REVISION, current_revision, script_location

prefix = Path(sys.prefix).resolve()
assert prefix in Path(codemode_store.__file__).resolve().parents, codemode_store.__file__
assert prefix in script_location().resolve().parents, script_location()
with ObservationStore.open(Path(sys.argv[1]) / "host.db") as store:
    s = store.session("thread-1")
    s.create_cell("cell-1")
    assert s.begin("cell-1", 0) is None
    s.record("cell-1", 0, Outcome.completed([TextItem("from the wheel")]))
with ObservationStore.open(Path(sys.argv[1]) / "host.db") as store:
    obs = store.session("thread-1").get("cell-1", 0)
    assert obs.outcome == Outcome.completed([TextItem("from the wheel")]), obs
    assert current_revision(store.engine) == HEAD_REVISION
print("ok")
"""


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    """Run a command; fail the test with its output unless it succeeds."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    # Without isolation when the build backend is at hand: no download needed.
    isolation = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    run(sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_ships_the_migrations_and_cli_inside_the_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "codemode_store/__init__.py",
        "codemode_store/py.typed",
        "codemode_store/cli.py",
        "codemode_store/migrations/env.py",
        "codemode_store/migrations/script.py.mako",
    } <= names
    versions = {name for name in names if name.startswith("codemode_store/migrations/versions/")}
    expected = {
        f"codemode_store/migrations/versions/{path.name}"
        for path in (ROOT / "migrations/versions").glob("*.py")
    }
    assert expected and versions >= expected
    tops = {name.split("/")[0] for name in names}
    assert tops == {"codemode_store", f"codemode_store-{codemode_store.__version__}.dist-info"}
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    metadata = zipfile.ZipFile(wheel).read(
        f"codemode_store-{codemode_store.__version__}.dist-info/entry_points.txt"
    )
    assert b"codemode-store = codemode_store.cli:main" in metadata


@pytest.mark.slow
def test_the_wheel_installs_and_opens_a_store_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    assert run(python, "-c", SMOKE, work, cwd=work).strip() == "ok"
    version = run(bin_dir / "codemode-store", "--version", cwd=work)
    assert codemode_store.__version__ in version
    # No bare top-level `cli` module in site-packages.
    found = run(python, "-c", "import importlib.util; print(importlib.util.find_spec('cli'))", cwd=work)
    assert found.strip() == "None"
