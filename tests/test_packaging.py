"""Packaging: the wheel's and the sdist's file lists, and the two ways to install.

A regular install (the wheel) and an editable install (``pip install -e .``, the
way contributors install) each go into a fresh virtual environment, where the
``codemode-store`` command, ``import codemode_store.cli`` and a store opened
through the migrations must work from a folder outside the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import codemode_store
from codemode_store.migrate import HEAD_REVISION

ROOT = Path(__file__).resolve().parent.parent

# Run inside the fresh environment, from a folder outside the checkout.
SMOKE = """
import sys
from pathlib import Path
import codemode_store
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.migrate import HEAD_REVISION, current_revision, script_location

# Where the code must come from: the environment (wheel) or the checkout (editable).
home = Path(sys.argv[2]).resolve()
assert home in Path(codemode_store.__file__).resolve().parents, codemode_store.__file__
assert home in script_location().resolve().parents, script_location()
import codemode_store.cli
import codemode_store.migrations
assert home in Path(codemode_store.cli.__file__).resolve().parents, codemode_store.cli.__file__
assert callable(codemode_store.cli.main)
assert Path(codemode_store.migrations.__file__).resolve().parent == script_location().resolve()
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
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    # Without isolation when the build backend is at hand: no download needed.
    isolation = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    run(sys.executable, "-m", "build", "--sdist", "--wheel", *isolation, "--outdir", out, ROOT, cwd=ROOT)
    (sdist,) = out.glob("*.tar.gz")
    (built,) = out.glob("*.whl")
    return sdist, built


@pytest.fixture(scope="module")
def wheel(dists: tuple[Path, Path]) -> Path:
    """The wheel built from this checkout."""
    return dists[1]


def fresh_venv(where: Path) -> Path:
    """Create a virtual environment with pip; return its bin folder."""
    venv.create(where, with_pip=True)
    return where / ("Scripts" if os.name == "nt" else "bin")


def pip_install(bin_dir: Path, *args: str | Path, cwd: Path) -> None:
    """Install into the environment of ``bin_dir`` with its own pip."""
    run(
        bin_dir / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        *args,
        cwd=cwd,
        timeout=300,
    )


def check_installed(bin_dir: Path, home: Path, work: Path) -> None:
    """Check the API, ``codemode_store.cli`` and the command, run from ``work``, outside the checkout."""
    work.mkdir()
    assert run(bin_dir / "python", "-c", SMOKE, work, home, cwd=work).strip() == "ok"
    command = bin_dir / "codemode-store"
    assert codemode_store.__version__ in run(command, "--version", cwd=work)
    db = work / "by-the-command.db"
    run(command, "--db", db, "db", "upgrade", cwd=work)
    assert HEAD_REVISION in run(command, "--db", db, "db", "current", cwd=work)


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
    # The web page's templates and static files (the `web` extra's page needs nothing from the network).
    web = {
        f"codemode_store/web/{path.relative_to(ROOT / 'codemode_store/web')}"
        for folder in ("templates", "static")
        for path in (ROOT / "codemode_store/web" / folder).iterdir()
    }
    assert web and web <= names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"codemode_store", f"codemode_store-{codemode_store.__version__}.dist-info"}
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    metadata = zipfile.ZipFile(wheel).read(
        f"codemode_store-{codemode_store.__version__}.dist-info/entry_points.txt"
    )
    assert b"codemode-store = codemode_store.cli:main" in metadata


@pytest.mark.slow
def test_the_sdist_ships_the_license_the_docs_and_the_top_level_sources(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "cli.py", "alembic.ini", "migrations/env.py", "docs/protocol.md"} <= names
    assert not any(name.startswith("docs/api/") for name in names), (
        "the generated API reference is not shipped"
    )


@pytest.mark.slow
def test_the_wheel_carries_the_mit_license(wheel: Path) -> None:
    dist_info = f"codemode_store-{codemode_store.__version__}.dist-info"
    archive = zipfile.ZipFile(wheel)
    assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.slow
def test_the_wheel_installs_and_opens_a_store_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, wheel, cwd=tmp_path)
    site = run(
        bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
    )
    check_installed(bin_dir, Path(site.strip()), tmp_path / "work")
    # No bare top-level `cli` module in site-packages.
    found = run(
        bin_dir / "python",
        "-c",
        "import importlib.util; print(importlib.util.find_spec('cli'))",
        cwd=tmp_path,
    )
    assert found.strip() == "None"


@pytest.mark.slow
def test_an_editable_install_runs_the_checkouts_cli_and_migrations(tmp_path: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "--editable", ROOT, cwd=tmp_path)
    check_installed(bin_dir, ROOT, tmp_path / "work")
    # The checkout's own files, not copies made at install time: edits take effect at once.
    files = run(
        bin_dir / "python",
        "-c",
        "import codemode_store.cli as c, codemode_store.migrations as m; print(c.__file__, m.__file__)",
        cwd=tmp_path,
    )
    assert [Path(line).resolve() for line in files.split()] == [
        (ROOT / "cli.py").resolve(),
        (ROOT / "migrations" / "__init__.py").resolve(),
    ]
