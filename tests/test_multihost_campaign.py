"""The multi-host campaign (``scripts/multihost_campaign.py``), bounded, on both backends.

Four host processes per backend (a PostgreSQL database, one SQLite file), a
simulated Core routing six sessions between them, and at least 30 faults of
each kind across both backends: kills with a restart under the same host id,
zombies (stopped past their lease), duplicate host ids, connection cuts
(PostgreSQL) and session moves while a cell runs. The long run is by hand
(docs/multihost-campaign.md gives its command and figures). Other tests here show
that the campaign's checks see what they look for.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from support.backends import POSTGRES_URL_VARIABLE

from codemode_store import ObservationStore, Outcome, TextItem
from scripts.multihost_campaign import FAULTS, Core, ProcRecord, run_campaign

QUOTA = {"kill": 30, "zombie": 30, "duplicate": 30, "cut": 30, "move": 30}


@pytest.mark.slow
@pytest.mark.postgres
def test_thirty_faults_of_each_kind_break_no_invariant(postgres_admin: Engine) -> None:
    seed = random.Random(os.getpid()).randrange(2**32)
    report = run_campaign(QUOTA, seed=seed, postgres_url=os.environ[POSTGRES_URL_VARIABLE], lease=0.5)

    assert report.violations == [], f"seed {seed}: {report.violations[:10]}"
    faults = report.faults()
    assert all(faults[kind] >= QUOTA[kind] for kind in FAULTS), faults
    assert {b.backend for b in report.backends} == {"postgresql", "sqlite"}
    for backend in report.backends:
        assert backend.live_failed == 0
        # Fencing was tested on each backend: late answers came and were refused.
        assert backend.refused_late["HostFenced"] > 0, backend
        assert backend.lost_failures > 0 and backend.refused_late["NotPending"] > 0, backend
        assert backend.probes > 0 and backend.generations > 50, backend


def test_a_process_is_live_only_if_it_ran_unstopped_through_the_window() -> None:
    record = ProcRecord("h0", 1, started=100.0, stops=[[110.0, 113.0]])
    assert record.live_at(105.0, 2.0)
    assert not record.live_at(101.0, 2.0)  # just started: not yet through a window
    assert not record.live_at(111.0, 2.0)  # stopped
    assert not record.live_at(114.0, 2.0)  # thawed a moment ago: its lease may still be over
    assert record.live_at(116.0, 2.0)
    record.ended = 120.0
    assert not record.live_at(121.0, 2.0)


def _core(tmp_path: Path) -> Core:
    return Core("sqlite", str(tmp_path / "store.db"), tmp_path, seed=1, lease=1.0, hosts=1)


def test_the_checks_see_a_generation_run_twice(tmp_path: Path) -> None:
    core = _core(tmp_path)
    (tmp_path / "audit").write_text("h0 1 10 s c 0\nh1 1 11 s c 1\nh0 2 12 s c 0\n")
    core.check_audit()
    core.checker.close()
    assert core.report.violations == ["sqlite: s c generation 0 ran 2 times"]


def test_the_checks_see_a_late_answer_that_is_not_the_stored_one(tmp_path: Path) -> None:
    core = _core(tmp_path)
    with ObservationStore.open(core.db, host_id="h0") as store:
        s = store.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.record("c", 0, Outcome.yielded([TextItem("stored")]))
    request = {"id": 5, "session": "s", "op": "observe", "cell_id": "c", "generation": 0}
    core.requests[5] = ("s", request)
    late = {"id": 5, "ok": Outcome.yielded([TextItem("another")]).to_wire("c")}
    core._late_answer(late)
    core._late_answer({"id": 5, "ok": Outcome.yielded([TextItem("stored")]).to_wire("c")})
    core.checker.close()
    assert len(core.report.violations) == 1 and "not the stored one" in core.report.violations[0]
    assert core.report.late_accepted == 2


def test_the_checks_see_a_live_hosts_generation_failed(tmp_path: Path) -> None:
    core = _core(tmp_path)
    with ObservationStore.open(core.db, host_id="h0", lease_seconds=60.0) as store:
        s = store.session("s")
        s.create_cell("c")
        s.begin("c", 0)
        s.fail("c", 0, "host h0 lost: the observation was interrupted")  # as a buggy recovery would
        incarnation = store.incarnation
    core.records.append(ProcRecord("h0", 7, started=time.time() - 60, incarnation=incarnation))
    session = core.sessions[0]
    session.name = "s"
    core.new_cell(session)
    assert session.cell is not None
    session.cell = type(session.cell)("c", "true", "", "completed")
    answer = {
        "id": 1,
        "error": {"code": "ObservationFailed", "message": "host h0 lost: the observation was interrupted"},
    }
    core.check_lost_failure(session, 0, answer)
    core.checker.close()
    assert core.report.live_failed == 1
    assert "failed while h0 was live" in core.report.violations[0]
