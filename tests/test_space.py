"""Space: the space figures, vacuum, and the ``vacuum`` and ``stats`` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli_runner import cli
from support.idle_stores import big, fill, payload_bytes

from codemode_store import ObservationStore
from codemode_store import space as space_module
from codemode_store.space import space


def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip(
            "page counts, auto-vacuum and checkpoints are SQLite's; PostgreSQL is covered by its own test"
        )


def test_a_new_sqlite_store_uses_incremental_auto_vacuum(store: ObservationStore, backend: str) -> None:
    sqlite_only(backend)
    assert space(store).auto_vacuum == "incremental"
    stats = store.vacuum().after  # checkpointed: every page is in the file now
    assert stats.auto_vacuum == "incremental"
    assert stats.page_size and stats.page_count
    assert stats.file_bytes == stats.page_size * stats.page_count
    assert stats.wal_bytes == 0


def test_release_then_vacuum_shrinks_the_file_to_what_is_kept(tmp_path: Path) -> None:
    with ObservationStore.open(tmp_path / "empty.db") as empty:
        empty_bytes = empty.vacuum().after.file_bytes
    with ObservationStore.open(tmp_path / "store.db") as store:
        kept, gone = store.session("kept"), store.session("gone")
        for index in range(50):
            gone.create_cell(f"c{index}")
            gone.begin(f"c{index}", 0)
            gone.record(f"c{index}", 0, big(index))
        for index in range(5):
            kept.create_cell(f"c{index}")
            kept.begin(f"c{index}", 0)
            kept.record(f"c{index}", 0, big(index))
        for index in range(50):
            assert gone.release(f"c{index}", 0)
        retained = payload_bytes(store, "kept")
        before = space(store)
        incremental = store.vacuum()
        full = store.vacuum(full=True)

    assert retained > 500_000
    budget = empty_bytes + retained + 55 * 200  # every row's key, times and sha256: at most 200 bytes
    assert before.file_bytes + (before.wal_bytes or 0) > 5_000_000
    assert before.reclaimable_bytes > 4_500_000
    for report in (incremental, full):
        assert report.checkpointed
        assert report.after.freelist_count == 0
        assert report.after.wal_bytes == 0
    assert (
        incremental.bytes_reclaimed
        == before.file_bytes + (before.wal_bytes or 0) - incremental.after.file_bytes
    )
    # The free pages are all given back; the leaf pages that held the first
    # kilobytes of each released payload stay, part empty, until a full VACUUM.
    assert incremental.after.file_bytes <= 1.10 * budget + 50 * 4096
    assert full.after.file_bytes <= 1.10 * budget


def test_full_vacuum_turns_auto_vacuum_on_for_an_older_file(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store.db"
    ObservationStore.open(path).close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        # A file made before incremental auto-vacuum was the default.
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    with ObservationStore.open(path) as store:
        s = store.session("s")
        for index in range(20):
            s.create_cell(f"c{index}")
            s.begin(f"c{index}", 0)
            s.record(f"c{index}", 0, big(index))
        for index in range(20):
            s.release(f"c{index}", 0)
        assert space(store).auto_vacuum == "none"

        incremental = store.vacuum()
        assert incremental.after.freelist_count == incremental.before.freelist_count
        assert (incremental.after.freelist_count or 0) > 0

        full = store.vacuum(full=True)
        assert full.full
        assert full.after.auto_vacuum == "incremental"
        assert full.after.freelist_count == 0
        assert full.after.file_bytes < 200_000 < 2_000_000 < incremental.after.file_bytes


def test_vacuum_reports_progress_to_the_end(
    store: ObservationStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_only(backend)
    s = store.session("s")
    for index in range(10):
        s.create_cell(f"c{index}")
        s.begin(f"c{index}", 0)
        s.record(f"c{index}", 0, big(index))
    for index in range(10):
        s.release(f"c{index}", 0)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(space_module, "VACUUM_STEP_PAGES", 50)  # several steps for about 250 free pages

    report = store.vacuum(progress=lambda done, total: seen.append((done, total)))

    free = report.before.freelist_count or 0
    assert free > 200
    # Each step (one short write transaction) gives back a step's worth of pages, not one.
    assert seen[0] == (50, free)
    assert len(seen) == -(-free // 50)
    assert seen[-1] == (free, free)
    assert report.after.freelist_count == 0


def test_vacuum_and_space_run_on_every_backend(store: ObservationStore, backend: str) -> None:
    fill(store, "s")
    store.end_session("s")

    report = store.vacuum()

    assert report.after.backend == ("sqlite" if backend == "sqlite" else "postgresql")
    assert report.after.file_bytes > 0
    assert report.after.reclaimable_bytes == 0
    assert set(report.to_json()) == {"full", "checkpointed", "bytes_reclaimed", "before", "after"}
    if backend != "sqlite":
        assert report.checkpointed is None
        assert report.after.page_count is None


# -- command line -----------------------------------------------------------------------------


def test_cli_vacuum_reports_the_sizes(aged_url: str, backend: str) -> None:
    cli(["--db", aged_url, "end-session", "old"])
    report = json.loads(cli(["--db", aged_url, "vacuum", "--json"]).stdout)
    assert set(report) == {"full", "checkpointed", "bytes_reclaimed", "before", "after"}
    assert report["after"]["reclaimable_bytes"] == 0
    for args in (["vacuum"], ["vacuum", "--full"]):
        # Never a negative reclaim: a store that grew (PostgreSQL's maps, a WAL) says so.
        out = cli(["--db", aged_url, *args]).stdout
        assert re.search(r"^reclaimed\s+[\d,]+ bytes", out, re.MULTILINE), out
    if backend == "sqlite":
        assert report["after"]["freelist_count"] == 0
        assert re.search(r"^free pages\s+0 \(0 bytes\) left$", out, re.MULTILINE)


def test_cli_stats_shows_free_pages_and_reclaimable_bytes_until_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        session = store.session("gone")
        for index in range(10):
            session.create_cell(f"c{index}")
            session.begin(f"c{index}", 0)
            session.record(f"c{index}", 0, big(index))
        store.end_session("gone")
    before = json.loads(cli(["--db", str(path), "stats", "--json"]).stdout)
    assert before["free_pages"] > 0
    assert before["reclaimable_bytes"] == before["free_pages"] * space_page_size(path)
    assert before["reclaimable_bytes"] >= 10 * 100_000 * 0.9
    assert "bytes reclaimable" in cli(["--db", str(path), "stats"]).stdout
    cli(["--db", str(path), "vacuum"])
    after = json.loads(cli(["--db", str(path), "stats", "--json"]).stdout)
    assert after["free_pages"] == 0
    assert after["reclaimable_bytes"] == 0


def space_page_size(path: Path) -> int:
    with ObservationStore.open(path) as store:
        size = space(store).page_size
    assert size is not None
    return size


def test_a_vacuum_that_grew_the_store_says_so_instead_of_a_negative_reclaim(postgres_url: str) -> None:
    with ObservationStore.open(postgres_url) as store:
        s = store.session("s")
        for index in range(30):  # released payloads leave dead row versions behind
            s.create_cell(f"c{index}")
            s.begin(f"c{index}", 0)
            s.record(f"c{index}", 0, big(index))
            s.release(f"c{index}", 0)
    # A first plain VACUUM keeps the space for reuse and writes the tables'
    # free-space and visibility maps: the store grows.
    out = cli(["--db", postgres_url, "vacuum"]).stdout
    sizes = re.search(r"^size\s+([\d,]+) -> ([\d,]+) bytes$", out, re.MULTILINE)
    assert sizes is not None, out
    before, after = (int(size.replace(",", "")) for size in sizes.groups())
    assert re.search(r"^reclaimed\s+[\d,]+ bytes", out, re.MULTILINE), out
    if after > before:
        assert f"grew by {after - before:,}" in out
