"""Retention hygiene: gc of idle sessions, the integrity check, space and vacuum."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import dump
from sqlalchemy import text

import cli as cli_module
from cli import main as cli_main
from codemode_store import ObservationStore, Outcome, TextItem, maintenance
from codemode_store.errors import AlreadyReleased, InvalidInput
from codemode_store.maintenance import parse_age, space

WEEK = timedelta(days=7)
MICROS_A_DAY = 86_400 * 1_000_000


def age(store: ObservationStore, session_id: str, days: int) -> None:
    """Move every time of a session ``days`` into the past, as if it had idled that long."""
    shift = {"d": days * MICROS_A_DAY, "s": session_id}
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE cells SET created_at = created_at - :d WHERE session_id = :s"), shift)
        conn.execute(
            text(
                "UPDATE observations SET begun_at = begun_at - :d, recorded_at = recorded_at - :d,"
                " released_at = released_at - :d WHERE session_id = :s"
            ),
            shift,
        )


def fill(store: ObservationStore, session_id: str) -> None:
    """Give a session one row of every state: retained, tombstone, failed, pending, and an empty cell."""
    s = store.session(session_id)
    s.create_cell("done")
    s.begin("done", 0)
    s.record("done", 0, Outcome.yielded([TextItem("partial " * 20)]))
    s.begin("done", 1)  # releases generation 0
    s.record("done", 1, Outcome.completed([TextItem("result " * 40)]))
    s.create_cell("broken")
    s.begin("broken", 0)
    s.fail("broken", 0, "the runtime died")
    s.create_cell("running")
    s.begin("running", 0)
    s.create_cell("idle")


def rows_of(store: ObservationStore, session_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Return the rows of one session in every table."""
    return {
        name: [row for row in rows if row[0] == session_id]
        for name, rows in dump(store).items()
        if name != "alembic_version"
    }


def payload_bytes(store: ObservationStore, session_id: str) -> int:
    """Return the bytes of the payloads a session still holds, read through the API."""
    return sum(cell.retained_bytes for cell in store.cells(session_id))


# -- gc ----------------------------------------------------------------------------------------


def test_gc_purges_only_sessions_idle_for_longer_than_the_age(store: ObservationStore) -> None:
    fill(store, "old")
    fill(store, "fresh")
    age(store, "old", 8)
    held = payload_bytes(store, "old")
    old_rows = rows_of(store, "old")
    fresh_before = rows_of(store, "fresh")

    report = store.gc(WEEK)

    assert [s.session_id for s in report.sessions] == ["old"]
    assert report.cells == len(old_rows["cells"]) == 4
    assert report.observations == len(old_rows["observations"]) == 4
    assert report.rows == 8
    assert report.bytes_freed == held > 0
    assert report.skipped == ()
    assert not report.dry_run
    assert store.cells("old") == []
    assert rows_of(store, "fresh") == fresh_before


def test_gc_dry_run_reports_what_a_real_run_does_and_writes_nothing(store: ObservationStore) -> None:
    for session_id in ("a", "b", "c"):
        fill(store, session_id)
    age(store, "a", 30)
    age(store, "c", 10)
    before = dump(store)

    planned = store.gc(WEEK, dry_run=True)

    assert dump(store) == before
    assert planned.dry_run
    done = store.gc(WEEK)
    assert [s.session_id for s in planned.sessions] == ["a", "c"]
    assert planned.sessions == done.sessions
    assert (planned.rows, planned.bytes_freed) == (done.rows, done.bytes_freed)


@pytest.mark.parametrize(
    "recent",
    [
        "UPDATE cells SET created_at = :now WHERE cell_id = 'idle'",
        "UPDATE observations SET begun_at = :now WHERE cell_id = 'running'",
        "UPDATE observations SET recorded_at = :now WHERE cell_id = 'broken'",
        "UPDATE observations SET released_at = :now WHERE cell_id = 'done' AND generation = 0",
    ],
    ids=["cell created", "begun", "recorded", "released"],
)
def test_gc_counts_every_kind_of_activity(store: ObservationStore, recent: str) -> None:
    fill(store, "s")
    age(store, "s", 30)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(text(recent), {"now": (now - timedelta(days=1)).timestamp() * 1_000_000 // 1})

    assert store.gc(WEEK, now=now).sessions == ()
    assert len(store.cells("s")) == 4


def test_gc_uses_the_given_now_and_keeps_a_session_active_at_the_cutoff(store: ObservationStore) -> None:
    fill(store, "s")
    last = max(cell.last_activity for cell in store.cells("s"))

    assert store.gc(WEEK, now=last + WEEK).sessions == ()
    report = store.gc(WEEK, now=last + WEEK + timedelta(microseconds=1))
    assert [s.session_id for s in report.sessions] == ["s"]
    assert report.sessions[0].last_activity == last
    assert report.cutoff == last + timedelta(microseconds=1)


def test_gc_keep_tombstones_drops_payloads_and_keeps_generations(store: ObservationStore) -> None:
    fill(store, "s")
    age(store, "s", 8)
    held = payload_bytes(store, "s")
    now = datetime.now(UTC)

    report = store.gc(WEEK, keep_tombstones=True, now=now)

    assert report.keep_tombstones
    assert report.cells == 0
    # retained, failed and pending rows; generation 0 of "done" was a tombstone already
    assert report.observations == 3
    assert report.bytes_freed == held > 0
    assert len(store.cells("s")) == 4
    s = store.session("s")
    rows = [obs for cell in ("done", "broken", "running") for obs in s.history(cell)]
    assert [obs.state for obs in rows] == ["released"] * 4
    assert all(obs.outcome is None and obs.error_text is None for obs in rows)
    assert s.get("done", 1).released_at == now  # type: ignore[union-attr]
    assert s.get("done", 1).payload_sha256 is not None  # type: ignore[union-attr]
    assert payload_bytes(store, "s") == 0
    with pytest.raises(AlreadyReleased):
        s.begin("done", 1)
    with pytest.raises(AlreadyReleased):
        s.begin("running", 0)
    # Nothing left to drop: a second run finds the session has nothing for it.
    assert store.gc(WEEK, keep_tombstones=True, now=now + 2 * WEEK).sessions == ()
    assert [x.session_id for x in store.gc(WEEK, now=now + 2 * WEEK).sessions] == ["s"]


def test_gc_rechecks_a_session_a_host_touched_after_the_scan(store: ObservationStore) -> None:
    fill(store, "a")
    fill(store, "b")
    age(store, "a", 8)
    age(store, "b", 8)
    b_session = store.session("b")

    def host_touches_b(done: int, total: int) -> None:
        if done == 1:  # "a" is gone; "b" is next, and a host uses it right now
            b_session.record("running", 0, Outcome.completed([TextItem("late")]))

    report = store.gc(WEEK, progress=host_touches_b)

    assert [s.session_id for s in report.sessions] == ["a"]
    assert report.skipped == ("b",)
    assert len(store.cells("b")) == 4
    assert store.session("b").get("running", 0).state == "retained"  # type: ignore[union-attr]


def test_gc_interrupted_midway_leaves_whole_sessions(store: ObservationStore) -> None:
    for session_id in ("a", "b", "c"):
        fill(store, session_id)
        age(store, session_id, 8)
    c_before = rows_of(store, "c")
    calls = []

    def crash_after_two(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.gc(WEEK, progress=crash_after_two)

    assert calls == [(1, 3), (2, 3)]
    assert store.cells("a") == store.cells("b") == []
    assert rows_of(store, "c") == c_before


def test_gc_of_an_empty_store_reports_nothing(store: ObservationStore) -> None:
    report = store.gc(timedelta(0))
    assert (report.sessions, report.rows, report.bytes_freed) == ((), 0, 0)
    assert report.to_json()["sessions"] == 0


def test_gc_refuses_an_age_reaching_before_the_year_1(store: ObservationStore) -> None:
    with pytest.raises(InvalidInput, match="older_than"):
        store.gc(timedelta(days=999_999_999))


@pytest.mark.parametrize("older_than", [timedelta(days=-1), 7, "7d", None])
def test_gc_refuses_an_age_that_is_not_a_non_negative_timedelta(
    store: ObservationStore, older_than: object
) -> None:
    with pytest.raises(InvalidInput, match="older_than"):
        store.gc(older_than)  # type: ignore[arg-type]


def test_gc_refuses_a_naive_now(store: ObservationStore) -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        store.gc(WEEK, now=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text_age", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        (" 0d ", timedelta(0)),
    ],
)
def test_parse_age_reads_a_number_and_a_unit(text_age: str, expected: timedelta) -> None:
    assert parse_age(text_age) == expected


@pytest.mark.parametrize("text_age", ["7", "d", "-1d", "1.5d", "7y", "", "7 days", "9999999999d"])
def test_parse_age_refuses_anything_else(text_age: str) -> None:
    with pytest.raises(InvalidInput, match="age"):
        parse_age(text_age)


# -- check -------------------------------------------------------------------------------------


def corrupt(
    store: ObservationStore,
    cell_id: str,
    generation: int,
    assignment: str,
    value: object,
    session_id: str = "s",
) -> None:
    """Overwrite one column of one observation behind the store's back."""
    where = "session_id = :s AND cell_id = :c AND generation = :g"
    with store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE observations SET {assignment} WHERE {where}"),
            {"v": value, "s": session_id, "c": cell_id, "g": generation},
        )


def test_check_of_a_sound_store_rehashes_every_payload(store: ObservationStore, backend: str) -> None:
    fill(store, "s")
    fill(store, "t")

    report = store.check()

    assert report.ok
    assert report.corrupt == ()
    assert report.quick_check == (() if backend == "sqlite" else None)
    # retained "done" 1 and failed "broken" 0 in each session
    assert report.payloads == 4
    assert report.payload_bytes == payload_bytes(store, "s") + payload_bytes(store, "t")
    assert report.to_json()["quick_check"] == ("ok" if backend == "sqlite" else "not applicable")


def test_check_names_each_corrupt_payload_by_key(store: ObservationStore) -> None:
    fill(store, "s")
    stored = store.session("s").get("done", 1)
    assert stored is not None and stored.payload_bytes is not None
    flipped = b"X" * stored.payload_bytes  # same length, other bytes
    corrupt(store, "done", 1, "payload = :v", flipped)
    corrupt(store, "broken", 0, "payload_bytes = :v", 3)

    report = store.check()

    assert not report.ok
    found = {(row.session_id, row.cell_id, row.generation): row for row in report.corrupt}
    assert set(found) == {("s", "done", 1), ("s", "broken", 0)}
    assert "sha256" in found[("s", "done", 1)].reason
    assert "bytes" not in found[("s", "done", 1)].reason
    assert "the row says 3" in found[("s", "broken", 0)].reason
    assert found[("s", "broken", 0)].state == "failed"
    assert report.to_json()["corrupt"][0]["session_id"] == "s"


def test_check_detects_a_wrong_sha256_on_an_untouched_payload(store: ObservationStore) -> None:
    fill(store, "s")
    corrupt(store, "done", 1, "payload_sha256 = :v", hashlib.sha256(b"something else").hexdigest())
    assert [(r.cell_id, r.generation) for r in store.check().corrupt] == [("done", 1)]


def test_check_pages_through_keys_and_chunks(
    store: ObservationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages and chunks, so that keys, pages and chunk boundaries cross sessions and cells.
    monkeypatch.setattr(maintenance, "CHECK_PAGE_ROWS", 3)
    monkeypatch.setattr(maintenance, "CHECK_CHUNK_BYTES", 1)
    for session_id in ("s", "s2", "t"):
        fill(store, session_id)
        for index in range(3):
            cell = f"extra{index}"
            store.session(session_id).create_cell(cell)
            store.session(session_id).begin(cell, 0)
            store.session(session_id).record(cell, 0, Outcome.completed([TextItem(f"{session_id} {index}")]))
    corrupt(store, "extra1", 0, "payload = :v", b"not json at all")
    seen: list[tuple[int, int]] = []

    report = store.check(progress=lambda done, total: seen.append((done, total)))

    assert report.payloads == 3 * 5
    assert [(r.session_id, r.cell_id) for r in report.corrupt] == [("s", "extra1")]
    assert len(seen) >= 5
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == report.payload_bytes


def test_check_reports_a_damaged_file_without_raising(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        s = store.session("s")
        for index in range(100):
            s.create_cell(f"c{index}")
            s.begin(f"c{index}", 0)
            s.record(f"c{index}", 0, Outcome.completed([TextItem("y" * 500)]))
        store.vacuum()
    with sqlite3.connect(path) as conn:
        leaves = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'observations' AND pagetype = 'leaf' ORDER BY pageno"
        ).fetchall()
    page_size = 4096
    with path.open("r+b") as file:
        # Garbage over the cell pointers of one leaf page of the observations table.
        file.seek((leaves[len(leaves) // 2][0] - 1) * page_size + 8)
        file.write(b"\xff" * 64)

    with ObservationStore.open(path) as store:
        report = store.check()

    assert not report.ok
    assert report.quick_check
    assert report.to_json()["ok"] is False


# -- space and vacuum ---------------------------------------------------------------------------


def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip(
            "page counts, auto-vacuum and checkpoints are SQLite's; PostgreSQL is covered by its own test"
        )


def big(index: int) -> Outcome:
    """A completed outcome of about 100 KB."""
    return Outcome.completed([TextItem(f"{index:03d}" + "x" * 100_000)])


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
    monkeypatch.setattr(maintenance, "VACUUM_STEP_PAGES", 50)  # several steps for about 250 free pages

    report = store.vacuum(progress=lambda done, total: seen.append((done, total)))

    assert (report.before.freelist_count or 0) > 200
    assert len(seen) > 2
    assert seen[-1] == (report.before.freelist_count, report.before.freelist_count)
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


def cli(args: list[str], code: int = 0) -> Result:
    """Invoke the CLI; assert the exit code and that no exception escaped."""
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def aged_url(store_url: str) -> str:
    """A store with session "old" idle for 8 days and session "new" in use."""
    with ObservationStore.open(store_url) as store:
        fill(store, "old")
        fill(store, "new")
        age(store, "old", 8)
    return store_url


def test_cli_gc_dry_run_lists_and_keeps_then_gc_purges(aged_url: str) -> None:
    with ObservationStore.open(aged_url) as store:
        before = dump(store)
        held = payload_bytes(store, "old")

    planned = cli(["--db", aged_url, "gc", "--older-than", "7d", "--dry-run"]).stdout
    with ObservationStore.open(aged_url) as store:
        assert dump(store) == before
    assert re.search(r"^1 session idle since ", planned, re.MULTILINE)
    assert re.search(rf"^old\s+\S+ \S+\s+4\s+4\s+{held}$", planned, re.MULTILINE)
    assert f"4 cells and 4 observations would be deleted; {held} payload bytes would be freed" in planned

    done = json.loads(cli(["--db", aged_url, "gc", "--older-than", "7d", "--json"]).stdout)
    assert (done["sessions"], done["rows"], done["bytes_freed"], done["dry_run"]) == (1, 8, held, False)
    assert [s["session_id"] for s in done["expired"]] == ["old"]
    with ObservationStore.open(aged_url) as store:
        assert store.cells("old") == []
        assert len(store.cells("new")) == 4


def test_cli_gc_keep_tombstones(aged_url: str) -> None:
    out = cli(["--db", aged_url, "gc", "--older-than", "1w", "--keep-tombstones"]).stdout
    assert "3 observations turned into tombstones" in out
    with ObservationStore.open(aged_url) as store:
        assert len(store.cells("old")) == 4
        assert payload_bytes(store, "old") == 0


@pytest.mark.parametrize("bad", ["7", "seven days", "-1d", "7y"])
def test_cli_gc_refuses_a_bad_age_as_a_usage_error(aged_url: str, bad: str) -> None:
    result = cli(["--db", aged_url, "gc", "--older-than", bad], 2)
    assert "--older-than" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_gc_needs_an_age(aged_url: str) -> None:
    assert "--older-than" in cli(["--db", aged_url, "gc"], 2).stderr


def test_cli_check_passes_a_sound_store(aged_url: str, backend: str) -> None:
    out = cli(["--db", aged_url, "check"]).stdout
    assert re.search(r"^payloads\s+4 payloads re-hashed \([\d,]+ bytes\), none corrupt$", out, re.MULTILINE)
    assert ("quick check  ok" in out) == (backend == "sqlite")
    report = json.loads(cli(["--db", aged_url, "check", "--json"]).stdout)
    assert report["ok"] is True
    assert report["corrupt"] == []


def test_cli_check_names_the_corrupt_row_and_exits_1(aged_url: str) -> None:
    with ObservationStore.open(aged_url) as store:
        corrupt(store, "done", 1, "payload = :v", b"tampered", session_id="new")

    result = cli(["--db", aged_url, "check"], 1)
    assert "session 'new', cell 'done', generation 1 (retained): the payload is 8 bytes" in result.stdout
    assert result.stderr.strip() == "error: the check found 1 problem"

    result = cli(["--db", aged_url, "check", "--json"], 1)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(r["session_id"], r["cell_id"], r["generation"]) for r in report["corrupt"]] == [
        ("new", "done", 1)
    ]


def test_cli_vacuum_reports_the_sizes(aged_url: str, backend: str) -> None:
    cli(["--db", aged_url, "end-session", "old"])
    report = json.loads(cli(["--db", aged_url, "vacuum", "--json"]).stdout)
    assert set(report) == {"full", "checkpointed", "bytes_reclaimed", "before", "after"}
    assert report["after"]["reclaimable_bytes"] == 0
    out = cli(["--db", aged_url, "vacuum", "--full"]).stdout
    assert re.search(r"^reclaimed\s+-?[\d,]+ bytes$", out, re.MULTILINE)
    if backend == "sqlite":
        assert report["after"]["freelist_count"] == 0
        assert re.search(r"^free pages\s+0 \(0 bytes\) left$", out, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["gc", "--older-than", "7d"], "purging idle sessions"),
        (["check"], "re-hashing payloads"),
        (["vacuum"], "reclaiming free pages"),
    ],
)
def test_cli_progress_bar_only_on_a_terminal_and_never_with_json(
    aged_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], label: str
) -> None:
    assert label not in cli(["--db", aged_url, *args]).output  # not a terminal: quiet
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    assert label not in cli(["--db", aged_url, *args, "--json"]).output
    assert label in cli(["--db", aged_url, *args]).output


@pytest.mark.parametrize("args", [["gc", "--older-than", "7d"], ["check"], ["vacuum"]])
def test_cli_maintenance_never_creates_a_store(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    result = cli(["--db", str(missing), *args], 1)
    assert result.stderr.startswith("error: ")
    assert not missing.exists()


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
