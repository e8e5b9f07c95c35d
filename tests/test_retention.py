"""Retention: gc of idle sessions, ``parse_age``, and the ``gc`` command."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from support.cli_runner import cli
from support.idle_stores import age, fill, payload_bytes
from support.tables import dump

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import AlreadyReleased, InvalidInput
from codemode_store.retention import parse_age

WEEK = timedelta(days=7)


def rows_of(store: ObservationStore, session_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Return the rows of one session in every table."""
    return {
        name: [row for row in rows if row[0] == session_id]
        for name, rows in dump(store).items()
        if name != "alembic_version"
    }


# -- gc ----------------------------------------------------------------------------------------


def test_gc_purges_only_sessions_idle_for_longer_than_the_age(store: ObservationStore) -> None:
    fill(store, "old")
    fill(store, "fresh")
    age(store, "old", 8)
    held = payload_bytes(store, "old")
    old_rows = rows_of(store, "old")
    fresh_before = rows_of(store, "fresh")

    report = store.gc(WEEK)

    assert [s.session_id for s in report.expired] == ["old"]
    assert report.cells == len(old_rows["cells"]) == 4
    assert report.observations == len(old_rows["observations"]) == 4
    assert report.rows == 8
    assert report.bytes_freed == held > 0
    assert report.skipped == ()
    assert not report.dry_run
    assert store.cells("old") == []
    assert rows_of(store, "fresh") == fresh_before


def as_plain_json(value: object) -> object:
    """Return a Python value as ``json`` would give it back: tuples as lists, times as ISO text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_plain_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [as_plain_json(item) for item in value]
    return value


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_gc_report_names_mean_the_same_in_python_and_in_json(store: ObservationStore, dry_run: bool) -> None:
    for session_id in ("a", "b", "c"):
        fill(store, session_id)
    age(store, "a", 30)
    age(store, "c", 10)

    report = store.gc(WEEK, dry_run=dry_run)
    as_json = json.loads(json.dumps(report.to_json()))

    assert report.sessions == 2 and [s.session_id for s in report.expired] == ["a", "c"]
    for key, value in as_json.items():
        assert as_plain_json(getattr(report, key)) == value, key


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
    assert [s.session_id for s in planned.expired] == ["a", "c"]
    assert planned.expired == done.expired
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

    assert store.gc(WEEK, now=now).expired == ()
    assert len(store.cells("s")) == 4


def test_gc_uses_the_given_now_and_keeps_a_session_active_at_the_cutoff(store: ObservationStore) -> None:
    fill(store, "s")
    last = max(cell.last_activity for cell in store.cells("s"))

    assert store.gc(WEEK, now=last + WEEK).expired == ()
    report = store.gc(WEEK, now=last + WEEK + timedelta(microseconds=1))
    assert [s.session_id for s in report.expired] == ["s"]
    assert report.expired[0].last_activity == last
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
    assert store.gc(WEEK, keep_tombstones=True, now=now + 2 * WEEK).expired == ()
    assert [x.session_id for x in store.gc(WEEK, now=now + 2 * WEEK).expired] == ["s"]


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

    assert [s.session_id for s in report.expired] == ["a"]
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
    assert (report.expired, report.rows, report.bytes_freed) == ((), 0, 0)
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


# -- command line -----------------------------------------------------------------------------


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
