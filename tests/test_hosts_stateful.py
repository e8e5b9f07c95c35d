"""A stateful property test of many hosts on one store, against a model of docs/several-hosts.md.

Hypothesis opens stores with two host ids (each open a new incarnation) and one
without, begins, records and recovers generations from any of them, and makes
hosts lost by moving their leases back. Every answer and every error class must
agree with the model: above all, no ``fail_pending`` ever fails a live host's
generation, a superseded incarnation's ``begin`` is ``HostFenced``, and only the
beginner records. SQLite only (the rules are the same SQL on both backends;
tests/test_hosts.py runs each rule on PostgreSQL).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import create_engine, text

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import HostFenced, NotPending, ObservationInProgress
from codemode_store.hosts import RESTARTED_TEXT, lost_text

HOSTS = ("h1", "h2")
ANSWER = Outcome.yielded([TextItem("out")])
#: Long enough that no renewal happens during a run: leases move only when the test moves them.
LEASE = 86_400.0


@dataclass
class Row:
    """The model of one generation 0: who began it, and its state and failure text."""

    host: str | None
    incarnation: int | None
    state: str = "pending"
    error_text: str | None = None


@dataclass
class Model:
    """What docs/several-hosts.md says the store holds."""

    current: dict[str, int] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    rows: dict[str, Row] = field(default_factory=dict)

    def fail(self, row: Row, text: str) -> None:
        row.state, row.error_text = "failed", text


class ManyHosts(RuleBasedStateMachine):
    """Stores of two host ids and an anonymous one, against the model."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.path = folder / f"store-{next(_RUNS)}.db"
        self.model = Model()
        #: (host id or None, incarnation or None, store); index 0 is the anonymous store.
        self.stores: list[tuple[str | None, int | None, ObservationStore]] = []
        self.cells = itertools.count()

    @initialize()
    def open_anonymous(self) -> None:
        self.stores.append((None, None, ObservationStore.open(self.path)))

    def teardown(self) -> None:
        for _host, _incarnation, store in self.stores:
            store.close()

    @rule(host=st.sampled_from(HOSTS))
    def open_host(self, host: str) -> None:
        store = ObservationStore.open(self.path, host_id=host, lease_seconds=LEASE)
        incarnation = self.model.current.get(host, 0) + 1
        assert store.incarnation == incarnation
        self.model.current[host] = incarnation
        self.model.lost.discard(host)
        recovered = 0
        for row in self.model.rows.values():
            if row.state == "pending" and row.host == host:
                self.model.fail(row, RESTARTED_TEXT)
                recovered += 1
        assert store.recovered == recovered
        self.stores.append((host, incarnation, store))

    @rule(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        host, incarnation, store = data.draw(st.sampled_from(self.stores))
        cell = f"c{next(self.cells)}"
        s = store.session("s")
        s.create_cell(cell)
        if host is not None and self.model.current[host] != incarnation:
            with pytest.raises(HostFenced):
                s.begin(cell, 0)
            return
        assert s.begin(cell, 0) is None
        self.model.rows[cell] = Row(host, incarnation)

    @rule(data=st.data())
    def record(self, data: st.DataObject) -> None:
        if not self.model.rows:
            return
        cell = data.draw(st.sampled_from(sorted(self.model.rows)))
        host, incarnation, store = data.draw(st.sampled_from(self.stores))
        row = self.model.rows[cell]
        s = store.session("s")
        if row.state == "retained":
            s.record(cell, 0, ANSWER)  # the same outcome again: an idempotent retry, from anyone
        elif row.state != "pending":
            with pytest.raises(NotPending):
                s.record(cell, 0, ANSWER)
        elif (row.host, row.incarnation) != (host, incarnation):
            with pytest.raises(ObservationInProgress) as raised:
                s.record(cell, 0, ANSWER)
            assert raised.value.host_id == row.host
        else:
            s.record(cell, 0, ANSWER)
            row.state = "retained"

    @rule(host=st.sampled_from(HOSTS))
    def pause(self, host: str) -> None:
        if host not in self.model.current:
            return
        engine = create_engine(f"sqlite:///{self.path}")
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE hosts SET lease_expires_at = lease_expires_at - :back WHERE host_id = :host"
                    ),
                    {"back": round(3 * LEASE * 1_000_000), "host": host},
                )
        finally:
            engine.dispose()
        self.model.lost.add(host)

    @rule(data=st.data())
    def fail_pending(self, data: st.DataObject) -> None:
        host, incarnation, store = data.draw(st.sampled_from(self.stores))
        expected = 0
        for row in self.model.rows.values():
            if row.state != "pending":
                continue
            if row.host is not None and row.host != host and row.host in self.model.lost:
                self.model.fail(row, lost_text(row.host))
            elif host is None and row.host is None:
                self.model.fail(row, "gone")
            elif host is not None and row.host == host and (row.incarnation or 0) < (incarnation or 0):
                # Its own earlier incarnations only: a superseded store's fail_pending
                # never fails the rows of the incarnation that superseded it.
                self.model.fail(row, RESTARTED_TEXT)
            else:
                continue
            expected += 1
        assert store.fail_pending("gone") == expected

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        if not self.stores:
            return
        store = self.stores[0][2]
        for observation in store.pending():
            assert self.model.rows[observation.cell_id].state == "pending", observation
        for cell, row in self.model.rows.items():
            found = store.session("s").get(cell, 0)
            assert found is not None
            assert (found.state, found.error_text, found.host_id) == (row.state, row.error_text, row.host)


_RUNS = itertools.count()


def test_many_hosts_agree_with_the_model(tmp_path: Path) -> None:
    run_state_machine_as_test(
        lambda: ManyHosts(tmp_path),
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
