"""End to end: a simulated Core drives the reference host, SIGKILLs it 110 times and crashes itself.

The campaign is ``scripts/core_crash_campaign.py`` (a longer run is its
``--kills`` option); these tests run it bounded, and show that its checks see a
re-run, other bytes for one generation, and an acknowledgement sent before
Core's commit.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from codemode_store import ObservationStore
from scripts.core_crash_campaign import SESSION, CellState, Lane, run_campaign


@pytest.mark.slow
def test_110_host_kills_and_core_crashes_lose_nothing_and_run_nothing_twice(tmp_path: Path) -> None:
    seed = random.Random(os.getpid()).randrange(2**32)
    report = run_campaign(110, seed=seed, folder=tmp_path, lanes=2, time_limit=240)

    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    assert report.total("kills") >= 110
    assert report.total("kills_in_flight") >= 20, report  # kills did land while a request was served
    assert report.total("restart_failures") >= 1, report  # ... and while a generation was running
    assert report.total("core_crashes") >= 10, report
    assert report.total("replays_checked") >= 10, report
    assert report.total("conflicts_checked") >= 1, report
    assert report.total("ghosts_checked") >= 2, report
    endings = report.endings
    assert all(endings[name] >= 1 for name in ("completed", "terminate", "close", "missing")), endings


@pytest.mark.postgres
def test_host_kills_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    seed = random.Random(os.getpid()).randrange(2**32)
    report = run_campaign(12, seed=seed, folder=tmp_path, lanes=1, databases=[postgres_url], time_limit=120)

    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    assert report.total("kills") >= 12
    assert report.total("generations") > 0


# -- the checks can fail ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_lane(tmp_path_factory: pytest.TempPathFactory) -> Lane:
    """A lane run to its end with four kills, and found sound."""
    folder = tmp_path_factory.mktemp("lane")
    lane = Lane("t", str(folder / "host.db"), folder, seed=5)
    lane.run(4, deadline=float("inf"), min_cells=10)
    assert lane.report.violations == []
    assert lane.report.generations > 0
    return lane


@pytest.fixture
def lane(finished_lane: Lane, tmp_path: Path) -> Lane:
    """A copy of the finished lane, with its files in ``tmp_path``, to alter."""
    shutil.copytree(finished_lane.folder, tmp_path, dirs_exist_ok=True)
    copy = Lane("t", str(tmp_path / "host.db"), tmp_path, seed=5)
    copy.plans = dict(finished_lane.plans)
    copy.received = dict(finished_lane.received)
    return copy


def test_the_checks_see_a_generation_run_twice_and_a_command_started_twice(lane: Lane) -> None:
    first_run = lane.audit.read_text().splitlines()[0]
    first_mark = lane.marks.read_text().splitlines()[0]
    with lane.audit.open("a") as audit:
        audit.write(first_run + "\n")
    with lane.marks.open("a") as marks:
        marks.write(first_mark + "\n")

    lane.check_end(set(lane.plans))

    cell, generation = first_run.split()[:2]
    assert any(f"{cell} generation {generation} ran 2 times" in v for v in lane.report.violations)
    assert any(f"{first_mark.split()[0]}: its command started 2 times" in v for v in lane.report.violations)


def test_the_checks_see_other_bytes_for_one_generation(lane: Lane) -> None:
    (cell, generation), _sha = next(iter(lane.received.items()))

    lane._received(cell, generation, {"ok": {"type": "missing", "cell_id": "someone-else"}})

    assert len(lane.report.violations) == 1
    assert f"{cell} {generation}: a second answer with other bytes" in lane.report.violations[0]


def test_the_checks_see_a_consumed_answer_the_store_lost(lane: Lane) -> None:
    states = lane.log.load()
    cell = next(c for c, state in states.items() if state.answers)
    with ObservationStore.open(lane.db) as store:
        store.end_session(SESSION)

    lane.check_end({cell})

    assert any(f"{cell}: Core created it, the store does not know it" in v for v in lane.report.violations)


def test_the_checks_see_an_acknowledged_generation_left_retained(lane: Lane) -> None:
    states = lane.log.load()
    cell, state = next((c, s) for c, s in states.items() if s.released)
    last = len(state.answers) - 1
    # Give the released generation a payload again, as if the release had been lost.
    with ObservationStore.open(lane.db) as store, store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE observations SET state = 'failed', payload = :p, payload_bytes = 1, "
                "payload_sha256 = :h, released_at = NULL WHERE cell_id = :c AND generation = :g"
            ),
            # A consistent row (length and sha256 of its payload): only the release is lost.
            {"p": b"x", "h": hashlib.sha256(b"x").digest(), "c": cell, "g": last},
        )

    lane.check_end({cell})

    assert any(f"{cell} {last}: acknowledged but failed" in v for v in lane.report.violations), lane.report


def test_a_core_restarting_from_its_log_sees_what_it_committed(finished_lane: Lane) -> None:
    states = finished_lane.log.load()
    assert states
    assert all(isinstance(state, CellState) and state.created for state in states.values())
    assert sum(len(state.answers) for state in states.values()) == finished_lane.report.generations


class EagerLane(Lane):
    """A faulty Core: it acknowledges a yield (asks for the next generation) before committing it."""

    acknowledged_early = False

    def _observe(self, cell_id: str, g: int, terminate: bool) -> bool:
        answer = self.ask(self._observe_request(cell_id, g, terminate))
        if answer.get("ok", {}).get("type") == "yielded" and not self.acknowledged_early:
            self.acknowledged_early = True
            self.ask(self._observe_request(cell_id, g + 1, terminate))  # the acknowledgement
            return False  # ... and Core crashes before its commit: it will ask for g again
        return super()._observe(cell_id, g, terminate)


def test_the_checks_see_an_acknowledgement_sent_before_cores_commit(tmp_path: Path) -> None:
    lane = EagerLane("t", str(tmp_path / "host.db"), tmp_path, seed=5)
    # No kills and no crashes of its own: the fault alone shows.
    lane.run(0, deadline=float("inf"), min_cells=12)

    assert lane.acknowledged_early
    assert any("AlreadyReleased" in v for v in lane.report.violations), lane.report.violations
