"""Power loss: a lossy FUSE filesystem keeps writes in memory until fsync; cuts lose nothing acknowledged.

The filesystem is ``scripts/lossyfs.py`` and the full campaign (1000 cuts and
more) is ``scripts/powerloss_campaign.py``; these tests check the filesystem's
own semantics, then run a bounded campaign. Where FUSE cannot be mounted they
skip with one line saying why, except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemode_store import ObservationStore, Outcome, TextItem
from scripts.lossyfs import BLOCK, LossyMount, fuse_unavailable
from scripts.powerloss_campaign import run_campaign

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fuse_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip (or, under CI=true, fail) when no FUSE filesystem can be mounted here."""
    reason = fuse_unavailable(tmp_path_factory.mktemp("fuse-probe"))
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, yet {reason}")
    pytest.skip(f"power-loss tests skipped: {reason}")


@pytest.fixture
def mount(fuse_works: None, tmp_path: Path) -> Iterator[LossyMount]:
    """A lossy filesystem over an empty backing folder."""
    backing, mountpoint = tmp_path / "backing", tmp_path / "mount"
    backing.mkdir()
    mountpoint.mkdir()
    with LossyMount(backing, mountpoint) as lossy:
        yield lossy


def _restart(mount: LossyMount, mode: str = "drop", seed: int = 0) -> None:
    """Cut the power, then mount again from the backing folder alone."""
    mount.cut(mode, seed)
    mount.unmount()
    mount.remount()


def _write(path: Path, data: bytes, *, sync: str | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        if sync == "fsync":
            os.fsync(fd)
        elif sync == "fdatasync":
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _sync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_only_synced_data_and_entries_survive_a_drop(mount: LossyMount) -> None:
    m = mount.mountpoint
    _write(m / "synced", b"kept", sync="fsync")
    _write(m / "unsynced", b"lost")
    _write(m / "data-only", b"data", sync="fdatasync")  # fdatasync does not make the entry durable
    _write(m / "grown", b"first", sync="fsync")
    with open(m / "grown", "ab") as f:
        f.write(b" and more")
    _write(m / "moved", b"moved", sync="fsync")
    os.rename(m / "moved", m / "renamed")
    _write(m / "doomed", b"doomed", sync="fsync")
    os.unlink(m / "doomed")
    # Reads see every write, synced or not.
    assert (m / "unsynced").read_bytes() == b"lost"
    assert (m / "grown").read_bytes() == b"first and more"
    assert sorted(os.listdir(m)) == ["data-only", "grown", "renamed", "synced", "unsynced"]

    _restart(mount)
    assert sorted(os.listdir(m)) == ["doomed", "grown", "moved", "synced"]
    assert (m / "synced").read_bytes() == b"kept"
    assert (m / "grown").read_bytes() == b"first"
    assert (m / "moved").read_bytes() == b"moved"
    assert (m / "doomed").read_bytes() == b"doomed"


def test_a_folder_fsync_makes_entries_durable_but_not_data(mount: LossyMount) -> None:
    m = mount.mountpoint
    _write(m / "a", b"a", sync="fsync")
    os.rename(m / "a", m / "b")
    _write(m / "new", b"unsynced data")
    _sync_folder(m)
    _restart(mount)
    assert sorted(os.listdir(m)) == ["b", "new"]
    assert (m / "b").read_bytes() == b"a"
    assert (m / "new").read_bytes() == b""  # the entry survived, the data did not


def test_an_unsynced_shrink_is_undone_and_a_synced_one_kept(mount: LossyMount) -> None:
    m = mount.mountpoint
    _write(m / "f", bytes(range(256)) * 64, sync="fsync")
    os.truncate(m / "f", 100)
    with open(m / "f", "r+b") as f:
        f.seek(5000)
        f.write(b"x")
    assert (m / "f").read_bytes() == bytes(range(100)) + bytes(4900) + b"x"
    _restart(mount)
    assert (m / "f").read_bytes() == bytes(range(256)) * 64
    fd = os.open(m / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 10)
        os.fsync(fd)
    finally:
        os.close(fd)
    _restart(mount)
    assert (m / "f").read_bytes() == bytes(range(10))


def test_a_torn_cut_keeps_a_random_subset_of_unsynced_blocks(mount: LossyMount) -> None:
    m = mount.mountpoint
    blocks = 64
    old = b"o" * (BLOCK * blocks)
    _write(m / "f", old, sync="fsync")
    fd = os.open(m / "f", os.O_WRONLY)
    try:
        os.pwrite(fd, b"n" * (BLOCK * blocks), 0)
    finally:
        os.close(fd)
    _restart(mount, "torn", seed=3)
    data = (m / "f").read_bytes()
    assert len(data) == len(old)
    kinds = {data[i * BLOCK : (i + 1) * BLOCK] for i in range(blocks)}
    assert kinds == {b"o" * BLOCK, b"n" * BLOCK}  # whole blocks, some of each


def test_after_the_cut_everything_fails_with_eio_and_the_writer_dies(mount: LossyMount) -> None:
    m = mount.mountpoint
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nwhile True:\n    open(sys.argv[1], 'ab').write(b'x' * 100)",
            str(m / "w"),
        ]
    )
    try:
        mount.victim(writer.pid)
        mount.arm(40, "drop", 0)
        assert writer.wait(timeout=60) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert mount.wait_cut(5) == 40
    with pytest.raises(OSError) as caught:
        (m / "w").read_bytes()
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError) as caught:
        _write(m / "other", b"x")
    assert caught.value.errno == errno.EIO


def test_sqlite_wal_runs_on_the_mount_across_processes(mount: LossyMount) -> None:
    db = mount.mountpoint / "wal.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (v)")
        for n in range(50):
            conn.execute("INSERT INTO t VALUES (?)", (n,))
        # Another process reads through the -shm index, mapped shared through FUSE.
        reader = (
            "import sqlite3, sys; "
            "print(sqlite3.connect(sys.argv[1]).execute('SELECT sum(v) FROM t').fetchone()[0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", reader, str(db)], capture_output=True, check=True, text=True
        )
        assert out.stdout.strip() == str(sum(range(50)))
        assert (mount.mountpoint / "wal.db-shm").exists()
    finally:
        conn.close()


WRITER = """
import sys
from codemode_store import ObservationStore, Outcome, TextItem
store = ObservationStore.open(sys.argv[1])
s = store.session("thread-1")
s.create_cell("cell-1")
s.begin("cell-1", 0)
s.record("cell-1", 0, Outcome.completed([TextItem("first call's answer")]))
print("acknowledged", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("mode", ["drop", "torn"])
def test_a_new_store_keeps_its_first_acknowledged_calls_through_a_cut(mount: LossyMount, mode: str) -> None:
    """The file's directory entry, the schema and the first commits are durable once acknowledged."""
    db = mount.mountpoint / "new.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        mount.victim(writer.pid)
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"acknowledged\n"
        _restart(mount, mode, seed=1)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.close()
        writer.stdout.close()
    with ObservationStore.open(db) as store:
        obs = store.session("thread-1").get("cell-1", 0)
        assert obs is not None and obs.outcome == Outcome.completed([TextItem("first call's answer")])


@pytest.mark.slow
def test_a_bounded_campaign_under_full_loses_nothing(fuse_works: None, tmp_path: Path) -> None:
    seed = random.Random(os.getpid() ^ time.time_ns()).randrange(2**32)
    report = run_campaign(100, durability="full", mode="mixed", seed=seed, folder=tmp_path)
    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    assert report.cuts == 100
    assert report.cuts_by_mode == {"drop": 50, "torn": 50}
    assert report.cuts_during_creation >= 2  # a new store every 50 cuts
    assert report.acknowledged > 500, report  # the cuts did land inside the host loop
    assert report.lost == 0 and report.corrupt == 0
    assert report.final_steps > 0 and report.rows_checked > 0


@pytest.mark.slow
def test_the_campaign_sees_the_faults_of_synchronous_off(fuse_works: None, tmp_path: Path) -> None:
    report = run_campaign(12, durability="full", mode="mixed", seed=5, folder=tmp_path, sync_off=True)
    assert report.faults > 0, report
    assert report.violations, report


@pytest.mark.slow
def test_normal_loses_only_a_tail_and_never_corrupts(fuse_works: None, tmp_path: Path) -> None:
    report = run_campaign(12, durability="normal", mode="mixed", seed=6, folder=tmp_path)
    assert report.violations == [], report.violations[:10]
    assert report.corrupt == 0
    assert report.acknowledged > 0


@pytest.mark.slow
def test_eight_sessions_sharing_commits_lose_nothing_acknowledged(fuse_works: None, tmp_path: Path) -> None:
    """Each writer runs 8 sessions at once (group commit); a cut loses no acknowledged step of any."""
    seed = random.Random(os.getpid() ^ time.time_ns()).randrange(2**32)
    report = run_campaign(10, durability="full", mode="mixed", seed=seed, folder=tmp_path, sessions=8)
    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    assert report.cuts == 10 and report.sessions == 8
    assert report.acknowledged > 500, report  # the cuts landed inside eight busy host loops
    assert report.lost == 0 and report.corrupt == 0


@pytest.mark.slow
def test_the_campaign_of_eight_sessions_sees_the_faults_of_synchronous_off(
    fuse_works: None, tmp_path: Path
) -> None:
    report = run_campaign(
        6, durability="full", mode="drop", seed=8, folder=tmp_path, sync_off=True, sessions=8
    )
    assert report.faults > 0, report
