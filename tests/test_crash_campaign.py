"""The crash campaign, bounded: 25 SIGKILLs of a host-loop writer lose nothing it committed.

The full campaign (200 kills and more) is ``scripts/crash_campaign.py``; these
tests run its own functions, and check that its checks would see a lost write.
"""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
from pathlib import Path

import pytest

from codemode_store import DatabaseError, ObservationStore
from scripts.crash_campaign import kill_once, observe, plan, row_problems, run_campaign


@pytest.mark.slow
def test_25_kills_lose_nothing_committed(tmp_path: Path) -> None:
    seed = random.Random(os.getpid()).randrange(2**32)
    report = run_campaign(25, seed=seed, folder=tmp_path, max_delay=0.3)
    assert report.kills == 25
    assert report.kills - report.early_kills >= 15, report
    assert report.operations_verified >= 25, report  # the kills did land inside the host loop
    assert report.rows_checked > 0
    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"


def test_the_plan_is_the_same_for_the_same_seed() -> None:
    first = list(itertools.islice(plan(7), 200))
    assert first == list(itertools.islice(plan(7), 200))
    assert first != list(itertools.islice(plan(8), 200))
    actions = {op.action for op in first}
    assert actions == {"create", "begin", "record", "fail", "release", "close"}
    kinds = {op.outcome.kind for op in first if op.outcome is not None}
    assert kinds == {"yielded", "completed", "terminated", "missing"}


def test_the_plan_holds_payloads_over_100_kb() -> None:
    from codemode_store.wire import encode_payload

    sizes = [len(encode_payload(op.outcome)) for op in itertools.islice(plan(3), 400) if op.outcome]
    assert max(sizes) > 100_000
    assert min(sizes) < 1_000


def test_the_checks_see_a_lost_or_altered_commit(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    result = kill_once(db, tmp_path, 0, 11, random.Random(11), max_delay=0.3)
    assert result.violations == []
    assert result.reported > 0
    assert row_problems(db)[1] == []
    with ObservationStore.open(db) as store:
        assert observe(store, "run-0") == result.model.snapshot()

    # Drop the last observation as if its commit had been lost: the model check sees it.
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("DELETE FROM observations WHERE rowid = (SELECT max(rowid) FROM observations)")
    finally:
        conn.close()
    with ObservationStore.open(db) as store:
        assert observe(store, "run-0") != result.model.snapshot()

    # Alter a stored hash behind the store's back: the row check sees it, and reads refuse the row.
    conn = sqlite3.connect(db)
    try:
        with conn:
            changed = conn.execute(
                "UPDATE observations SET payload_sha256 = ? "
                "WHERE rowid = (SELECT min(rowid) FROM observations WHERE payload IS NOT NULL)",
                (bytes(32),),
            ).rowcount
    finally:
        conn.close()
    assert changed == 1
    _count, problems = row_problems(db)
    assert any("does not match" in p for p in problems), problems
    with ObservationStore.open(db) as store, pytest.raises(DatabaseError, match="sha256 differs"):
        observe(store, "run-0")


@pytest.mark.slow
def test_kills_of_a_writer_running_four_sessions_at_once_lose_nothing_committed(tmp_path: Path) -> None:
    """Four sessions in threads of one writer share commits (group commit); every kill is checked for all."""
    seed = random.Random(os.getpid() + 1).randrange(2**32)
    report = run_campaign(8, seed=seed, folder=tmp_path, max_delay=0.3, sessions=4)
    assert report.kills == 8
    assert report.operations_verified >= 40, report
    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
