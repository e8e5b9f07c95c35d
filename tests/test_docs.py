"""The documentation: examples that run as written, links that resolve, a reference that builds.

- Every Python block of the README and of the docs named below runs as written,
  each in a fresh interpreter in an empty folder.
- No "SPEC §N" reference is left where a reader would meet it (README, docs,
  docstrings, CLI help): the rules are in docs/protocol.md, in the repository.
- Every relative link of the README and the docs names a file that exists.
- Every public name has a docstring with a one-line summary, and the API
  reference builds from them (scripts/build_docs.py) without a warning.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import codemode_store
import codemode_store.errors

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: The docs whose Python blocks must run (README.md too). Other pages join once
#: their examples are written to run as they stand.
RUNNABLE_DOCS = [
    README,
    DOCS / "protocol.md",
    DOCS / "operations.md",
    DOCS / "security.md",
    DOCS / "development.md",
    DOCS / "host.md",
    DOCS / "telemetry.md",
    DOCS / "several-hosts.md",
]

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> Iterator[tuple[str, str]]:
    """Yield (id, source) for each Python block of the runnable docs."""
    for doc in RUNNABLE_DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{doc.relative_to(ROOT)}:{line}", match.group(1)


BLOCKS = dict(python_blocks())


def test_the_readme_has_python_blocks_to_run() -> None:
    assert any(name.startswith("README.md:") for name in BLOCKS)
    assert any(name.startswith("docs/operations.md:") for name in BLOCKS)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_python_block_runs_as_written(name: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CODEMODE_STORE_")}
    # Blocks that show a deployment read the store's URL from the environment.
    env["CODEMODE_STORE_URL"] = f"sqlite:///{tmp_path / 'from-the-environment.db'}"
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[name]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{name}\n{BLOCKS[name]}\n{done.stdout}\n{done.stderr}"
    assert done.stderr == "", done.stderr


def test_the_python_blocks_run_one_after_another_in_one_folder(tmp_path: Path) -> None:
    # A reader who tries them all in one folder: each example names its own session.
    env = {key: value for key, value in os.environ.items() if not key.startswith("CODEMODE_STORE_")}
    env["CODEMODE_STORE_URL"] = f"sqlite:///{tmp_path / 'from-the-environment.db'}"
    env["PYTHONPATH"] = str(ROOT)
    program = (
        "import json, sys\n"
        "for name, source in json.load(sys.stdin):\n"
        "    exec(compile(source, name, 'exec'), {'__name__': '__main__'})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(sorted(BLOCKS.items())),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_keeps_the_two_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:30])
    assert "bash scripts/demo.sh" in first_screen
    assert "bash scripts/test.sh" in first_screen
    assert ".venv/bin/codemode-store" in first_screen
    assert "source .venv/bin/activate" in first_screen
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert (ROOT / script).is_file()
    # CI runs the README's test command.
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# -- no dangling SPEC references ---------------------------------------------------------------

_SPEC = re.compile(r"\bSPEC\b|§")

#: Modules the hot-path rewrite (issue 15) replaces; their docstrings move to
#: docs/protocol.md with that rewrite. Remove a name once it has.
BEING_REWRITTEN = {"operations.py", "statements.py", "calls.py", "store.py", "engine.py"}


def reader_facing_files() -> list[Path]:
    """Return the files a reader meets: README, docs, the package's sources and the CLI."""
    package = [
        path for path in sorted((ROOT / "codemode_store").glob("*.py")) if path.name not in BEING_REWRITTEN
    ]
    return [README, *sorted(DOCS.glob("*.md")), ROOT / "cli.py", *package]


def test_no_reader_meets_a_spec_the_repository_does_not_hold() -> None:
    dangling = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in reader_facing_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _SPEC.search(line)
    ]
    assert dangling == []


def test_the_protocol_page_states_every_operation_and_error() -> None:
    protocol = (DOCS / "protocol.md").read_text(encoding="utf-8")
    operations = ["create_cell", "begin", "record", "fail", "release", "close_cell", "get", "history"]
    operations += ["cells", "pending", "fail_pending", "end_session"]
    for operation in operations:
        assert re.search(rf"^### .*\b{operation}\(", protocol, re.MULTILINE), operation
    for state in ("pending", "retained", "failed", "released"):
        assert f"**{state}**" in protocol, state
    # The rule errors: every refusal of an operation is one of these.
    rule_errors = ["InvalidInput", "UnknownCell", "DuplicateCell", "FutureGeneration", "CellClosed"]
    rule_errors += ["ObservationInProgress", "AlreadyReleased", "GenerationConflict", "NotPending"]
    rule_errors += ["NotReleasable", "SchemaError", "DatabaseBusy"]
    for name in rule_errors:
        assert f"`{name}`" in protocol, name
    # And every error of the library, the database's own included.
    for name in codemode_store.errors.__all__:
        if name != "StoreError":
            assert f"`{name}`" in protocol, name


# -- links -------------------------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")

#: Pages other changes write; once they exist their links are checked like any other.
WRITTEN_ELSEWHERE = {
    "cli.md",
    "errors.md",
    "durability.md",
    "postgresql-failures.md",
    "performance.md",
    "host.md",
}


def test_every_relative_link_names_a_file_that_exists() -> None:
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if path.exists() or (path.parent == DOCS and path.name in WRITTEN_ELSEWHERE):
                continue
            broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


# -- docstrings and the API reference ----------------------------------------------------------

#: The modules whose ``__all__`` is the public API: the facade, the errors, the
#: asyncio front end, and the reports that gc, check and vacuum return.
PUBLIC_MODULES = [
    "codemode_store",
    "codemode_store.errors",
    "codemode_store.aio",
    "codemode_store.retention",
    "codemode_store.integrity",
    "codemode_store.space",
]


def public_objects() -> Iterator[tuple[str, object]]:
    """Yield (qualified name, object) for every public class and function, and their members."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        yield module_name, module
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            yield f"{module_name}.{name}", obj
            if not inspect.isclass(obj):
                continue
            for member_name, member in vars(obj).items():
                if member_name.startswith("_"):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member):
                    yield f"{module_name}.{name}.{member_name}", member


def own_docstring(obj: object) -> str | None:
    """Return the docstring written for ``obj`` itself (not inherited, not generated)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None  # what @dataclass writes when the class has no docstring
    return doc if isinstance(doc, str) else None


def test_the_public_api_is_what_the_docs_check() -> None:
    names = {name for name, _ in public_objects()}
    assert {"codemode_store.ObservationStore.open", "codemode_store.StoreSession.begin"} <= names
    assert "codemode_store.errors.UnknownCell" in names
    assert "codemode_store.retention.GcReport.sessions" in names


def test_every_public_name_has_a_one_line_summary() -> None:
    missing = []
    for name, obj in public_objects():
        doc = own_docstring(obj)
        summary = doc.strip().splitlines()[0] if doc and doc.strip() else ""
        if not summary.endswith("."):
            missing.append(name)
    assert missing == []


@pytest.mark.slow
def test_the_api_reference_builds_from_the_docstrings(tmp_path: Path) -> None:
    out = tmp_path / "api"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    page = (out / "codemode_store.html").read_text(encoding="utf-8")
    for name in codemode_store.__all__:
        if name != "__version__":
            assert name in page, name
    errors_page = (out / "codemode_store" / "errors.html").read_text(encoding="utf-8")
    assert "The generation was released: its payload is gone" in errors_page
    store_page = (out / "codemode_store" / "store.html").read_text(encoding="utf-8")
    assert "Open the store at a path or SQLAlchemy URL" in store_page
    assert (out / "index.html").is_file()


# -- figures stand in one place ----------------------------------------------------------------

_TABLE_ROW = re.compile(r"^\|.*\|$", re.MULTILINE)


def test_benchmark_figures_stand_in_performance_md_and_are_only_linked_from_elsewhere() -> None:
    performance = (DOCS / "performance.md").read_text(encoding="utf-8")
    # The README's table is rows of performance.md's run, verbatim.
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    rows = [row for row in _TABLE_ROW.findall(section) if re.search(r"\d", row)]
    assert rows and [row for row in rows if row not in performance] == []
    # durability.md quotes no figure of its own: it links to the run.
    durability = (DOCS / "durability.md").read_text(encoding="utf-8")
    cost = durability.split("## Cost of `full` against `normal`", 1)[1].split("\n## ", 1)[0]
    assert "performance.md" in cost
    assert re.findall(r"\d+(?:\.\d+)?x|\b\d{3,}\b", cost) == []

    # The one statement of the ratio of full to normal agrees with the table it comes from.
    def cells_per_second(setting: str) -> int:
        match = re.search(
            rf"^\| host loop \(6 txns/cell\), durability={setting} \| cells/s \| (\d+) \|", performance, re.M
        )
        assert match is not None, setting
        return int(match.group(1))

    stated = re.search(r"`full` takes about (\d+\.\d)x the time of `normal`", performance)
    assert stated is not None
    assert float(stated.group(1)) == round(cells_per_second("normal") / cells_per_second("full"), 1)


def test_the_docs_say_what_the_tools_need() -> None:
    # The API reference needs pdoc, which comes with the test extra; the script says so too.
    for page in (DOCS / "index.md", DOCS / "development.md"):
        text = page.read_text(encoding="utf-8")
        assert "build_docs.py" in text and "'.[test]'" in text, page.name
    # scripts/start-postgres.sh: Debian's binaries, and a system user created when run as root.
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    for words in ("Debian's PostgreSQL binaries", "/usr/lib/postgresql", "useradd", "codemode-pg"):
        assert words in operations, words
    script = (ROOT / "scripts" / "start-postgres.sh").read_text(encoding="utf-8")
    assert "SERVICE_USER=codemode-pg" in script and "/usr/lib/postgresql/" in script


def test_build_docs_without_pdoc_says_which_extra_to_install(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "build_docs.py"
    code = (
        "import runpy, sys\n"
        "sys.modules['pdoc'] = None  # as on an install without the test extra\n"
        f"sys.argv = [{str(script)!r}, '--out', {str(tmp_path)!r}]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr == "error: building the API reference needs pdoc: pip install -e '.[test]'\n"
