"""Faults of the file and the disk: each is a clear StoreError, one CLI line, and the data stays.

Disk full (SQLite's page limit, and a tiny tmpfs when mounting is allowed), a
read-only file and a read-only folder (as an unprivileged user: root ignores
file permissions), a file that is not a database, a truncated database, a
database from a newer version, and a payload altered behind the store's back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event
from support.tables import dump

from cli import main
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import DatabaseError, NotADatabase, SchemaError, StoreError

ROOT = Path(__file__).resolve().parent.parent


def digest(path: Path) -> str:
    """Return the sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fill(store: ObservationStore, cells: int = 3, size: int = 2_000) -> None:
    """Write ``cells`` completed cells, a pending one (``big``) and a retained yield (``open``)."""
    s = store.session("s")
    for i in range(cells):
        cell = f"c{i}"
        s.create_cell(cell)
        s.begin(cell, 0)
        s.record(cell, 0, Outcome.completed([TextItem(f"{i}" * size)]))
    s.create_cell("big")
    s.begin("big", 0)
    s.create_cell("open")
    s.begin("open", 0)
    s.record("open", 0, Outcome.yielded([TextItem("partial")]))


def cli(args: list[str]) -> Result:
    """Invoke the CLI in this process."""
    return CliRunner().invoke(main, args)


def assert_one_line_error(result: Result, *words: str) -> None:
    """Assert exit 1 with one ``error:`` line on stderr, nothing on stdout, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# Every command that opens a store; ("s", "c0") exists in a sound store.
STORE_COMMANDS = {
    "sessions": ["sessions"],
    "cells": ["cells", "--json"],
    "stats": ["stats"],
    "history": ["history", "s", "c0"],
    "show": ["show", "s", "c0"],
    "show json": ["show", "s", "c0", "0", "--json"],
    "release": ["release", "s", "c0", "0"],
    "end-session": ["end-session", "s"],
    "gc": ["gc", "--older-than", "1d"],
    "check": ["check"],
    "vacuum": ["vacuum"],
    "db upgrade": ["db", "upgrade"],
}


# -- disk full ---------------------------------------------------------------------------------------------


def limit_pages(store: ObservationStore, extra_pages: int) -> None:
    """Cap the file at its current size plus ``extra_pages`` on every connection the store opens next."""
    conn = sqlite3.connect(store.engine.url.database or "")
    try:
        limit = conn.execute("PRAGMA page_count").fetchone()[0] + extra_pages
    finally:
        conn.close()

    @event.listens_for(store.engine, "connect")
    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {int(limit)}")

    store.engine.dispose()  # the store's idle connections are dropped with the old pool


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda s: s.record("big", 0, Outcome.completed([TextItem("y" * 2_000_000)])), id="record"
        ),
        pytest.param(lambda s: s.fail("big", 0, "E" * 2_000_000), id="fail"),
    ],
)
def test_disk_full_at_the_page_limit_is_a_database_error_and_keeps_the_data(
    tmp_path: Path, call: Any
) -> None:
    with ObservationStore.open(tmp_path / "store.db") as store:
        fill(store)
        before = dump(store)
        limit_pages(store, 8)
        with pytest.raises(DatabaseError) as caught:
            call(store.session("s"))
        assert "full" in str(caught.value)
        assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == ("s", "big", 0)
        assert dump(store) == before
        # What fits still goes in: the store is usable after the fault.
        store.session("s").record("big", 0, Outcome.completed([TextItem("small")]))
        found = store.session("s").get("big", 0)
        assert found is not None and found.outcome == Outcome.completed([TextItem("small")])


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (skips where mounting is not allowed)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("mounting a tiny tmpfs needs root; disk full is covered by the page-limit tests")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run([umount, "-l", str(mount_point)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write zeros into ``folder`` until the file system says it is full; return the filler."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    return filler


def test_a_full_file_system_is_a_database_error_and_keeps_the_data(tiny_filesystem: Path) -> None:
    with ObservationStore.open(tiny_filesystem / "store.db") as store:
        fill(store)
        before = dump(store)
        filler = fill_disk(tiny_filesystem)
        with pytest.raises(DatabaseError) as caught:
            store.session("s").record("big", 0, Outcome.completed([TextItem("y" * 300_000)]))
        assert "full" in str(caught.value) and "'big'" in str(caught.value)
        assert dump(store) == before

        # The CLI on the full disk: creating a new store fails in one line.
        result = cli(["--db", str(tiny_filesystem / "new.db"), "db", "upgrade"])
        assert_one_line_error(result, "full")

        filler.unlink()
        store.session("s").record("big", 0, Outcome.completed([TextItem("y" * 300_000)]))
        found = store.session("s").get("big", 0)
        assert found is not None and found.state == "retained"
    assert (
        json.loads(cli(["--db", str(tiny_filesystem / "store.db"), "stats", "--json"]).stdout)["cells"] == 5
    )


# -- read-only file, read-only folder (as an unprivileged user) ----------------------------------------------

PROBE = """
import json, sys
from codemode_store import ObservationStore
from codemode_store.errors import StoreError
result = {}
try:
    store = ObservationStore.open(sys.argv[1])
except StoreError as exc:
    print(json.dumps({"open": [type(exc).__name__, str(exc)]}))
    sys.exit()
try:
    result["read"] = [c.cell_id for c in store.cells()]
except StoreError as exc:
    result["read"] = [type(exc).__name__, str(exc)]
try:
    store.session("s").create_cell("new")
    result["write"] = "written"
except StoreError as exc:
    result["write"] = [type(exc).__name__, str(exc)]
print(json.dumps(result))
"""


@pytest.fixture
def unprivileged() -> list[str]:
    """The command prefix that runs a process as a user the file permissions apply to."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and no user 'nobody': file permissions cannot be enforced")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder outside pytest's private tmp tree, owned by the unprivileged user when root runs."""
    folder = Path(tempfile.mkdtemp(prefix="codemode-faults-"))
    try:
        yield folder
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder)


def give_away(path: Path) -> None:
    """Hand ``path`` to the unprivileged user (only when running as root)."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def run_as(prefix: list[str], args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` from this checkout as the unprivileged user."""
    return subprocess.run(
        [*prefix, sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def assert_cli_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Assert a CLI process exited 1 with one ``error:`` line and no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def make_store(folder: Path) -> Path:
    """Create a store with data in ``folder``; closing it leaves the main file only."""
    path = folder / "store.db"
    with ObservationStore.open(path) as store:
        fill(store)
    assert not Path(f"{path}-wal").exists()
    for item in (folder, path):
        give_away(item)
    return path


def test_a_read_only_file(unprivileged: list[str], shared_folder: Path) -> None:
    path = make_store(shared_folder)
    path.chmod(0o400)
    before = digest(path)

    probe = json.loads(run_as(unprivileged, ["-c", PROBE, str(path)]).stdout)
    assert probe["read"] == ["c0", "c1", "c2", "big", "open"]  # reading still works
    assert probe["write"][0] == "DatabaseError" and "readonly" in probe["write"][1]
    assert "'new'" in probe["write"][1]

    cli_path = str(ROOT / "cli.py")
    read = run_as(unprivileged, [cli_path, "--db", str(path), "cells", "--json"])
    assert read.returncode == 0 and len(json.loads(read.stdout)) == 5
    for command in (["release", "s", "c0", "0"], ["end-session", "s"]):
        assert_cli_one_line_error(run_as(unprivileged, [cli_path, "--db", str(path), *command]), "readonly")
    assert digest(path) == before


def test_a_read_only_folder(unprivileged: list[str], shared_folder: Path) -> None:
    path = make_store(shared_folder)
    shared_folder.chmod(0o555)
    before = digest(path)
    cli_path = str(ROOT / "cli.py")

    # WAL needs its -wal and -shm files beside the database: the open is refused.
    probe = json.loads(run_as(unprivileged, ["-c", PROBE, str(path)]).stdout)
    assert probe["open"][0] == "DatabaseError", probe
    assert_cli_one_line_error(run_as(unprivileged, [cli_path, "--db", str(path), "cells"]))

    new = shared_folder / "new.db"
    probe = json.loads(run_as(unprivileged, ["-c", PROBE, str(new)]).stdout)
    assert probe["open"][0] == "DatabaseError", probe
    assert_cli_one_line_error(run_as(unprivileged, [cli_path, "--db", str(new), "db", "upgrade"]))
    assert sorted(p.name for p in shared_folder.iterdir()) == ["store.db"]
    assert digest(path) == before


# -- files that are not (whole, current) stores --------------------------------------------------------------

NOT_DATABASES = {
    "text": b"this is not a database file at all\n" * 200,
    "random bytes": bytes(range(256)) * 40,
    "sqlite header, garbage after": b"SQLite format 3\x00" + b"\xff" * 8176,
}


@pytest.mark.parametrize("content", NOT_DATABASES.values(), ids=list(NOT_DATABASES))
def test_a_file_that_is_not_a_database_through_the_api(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        ObservationStore.open(path)
    assert isinstance(caught.value, (NotADatabase, SchemaError)), caught.value
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]


@pytest.mark.parametrize("args", STORE_COMMANDS.values(), ids=list(STORE_COMMANDS))
@pytest.mark.parametrize("content", NOT_DATABASES.values(), ids=list(NOT_DATABASES))
def test_a_file_that_is_not_a_database_through_the_cli(
    tmp_path: Path, content: bytes, args: list[str]
) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)
    assert_one_line_error(cli(["--db", str(path), *args]))
    assert path.read_bytes() == content


@pytest.fixture
def truncated(tmp_path: Path) -> Path:
    """A store of about 1 MB cut in half."""
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill(store, cells=40, size=20_000)
    size = path.stat().st_size
    assert size > 500_000 and not Path(f"{path}-wal").exists()
    os.truncate(path, size // 2)
    return path


def test_a_truncated_database_through_the_api(truncated: Path) -> None:
    before = digest(truncated)
    with pytest.raises(NotADatabase, match="malformed"):
        ObservationStore.open(truncated)
    assert digest(truncated) == before


@pytest.mark.parametrize("args", STORE_COMMANDS.values(), ids=list(STORE_COMMANDS))
def test_a_truncated_database_through_the_cli(truncated: Path, args: list[str]) -> None:
    before = digest(truncated)
    assert_one_line_error(cli(["--db", str(truncated), *args]), "malformed")
    assert digest(truncated) == before


@pytest.fixture
def newer(tmp_path: Path) -> Path:
    """A store with data, stamped with a revision this version does not know."""
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill(store)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    finally:
        conn.close()
    return path


@pytest.mark.parametrize("args", STORE_COMMANDS.values(), ids=list(STORE_COMMANDS))
def test_a_database_from_a_newer_version_through_the_cli(newer: Path, args: list[str]) -> None:
    before = digest(newer)
    assert_one_line_error(cli(["--db", str(newer), *args]), "'ffff_from_the_future'", "newer")
    assert digest(newer) == before


def test_a_database_from_a_newer_version_can_still_be_asked_its_revision(newer: Path) -> None:
    before = digest(newer)
    result = cli(["--db", str(newer), "db", "current"])
    assert result.exit_code == 0 and "ffff_from_the_future" in result.stdout
    with pytest.raises(SchemaError, match="newer"):
        ObservationStore.open(newer)
    assert digest(newer) == before


# -- a payload altered behind the store's back ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\x00 not utf-8",
        b"{not json",
        b'{"type": "completed", "content_items": 5}',
        b'{"type": 1}',
        b"[1, 2]",
        b"null",
    ],
    ids=["not utf-8", "not json", "content not a list", "bad type", "a list", "null"],
)
def test_an_altered_payload_is_a_database_error_naming_its_key(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill(store)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE observations SET payload = ? WHERE cell_id = 'c1'", (payload,))
    finally:
        conn.close()
    with ObservationStore.open(path) as store:
        s = store.session("s")
        for read in (lambda: s.get("c1", 0), lambda: s.history("c1")):
            with pytest.raises(DatabaseError) as caught:
                read()
            assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == ("s", "c1", 0)
            assert "altered or damaged" in str(caught.value)
        assert s.get("c0", 0) is not None  # the other rows read as before
    for args in (["show", "s", "c1"], ["show", "s", "c1", "0", "--json"]):
        assert_one_line_error(cli(["--db", str(path), *args]), "'c1'", "generation 0")
    # A listing reads no payload (only a failure's text), so it still lists the row.
    listed = cli(["--db", str(path), "history", "s", "c1", "--format", "jsonl"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["generation"] == 0
    check = cli(["--db", str(path), "check"])
    assert check.exit_code == 1 and "c1" in check.stdout
