"""Revision 0003: the hosts table and who began each observation, up and down with data in it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy import inspect, select
from support.tables import dump
from test_migration_cells_without_rowid import fill_every_state, references_and_integrity

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.migrate import HEAD_REVISION, current_revision, downgrade, upgrade
from codemode_store.schema import observations

BIG = Outcome.yielded([TextItem("x" * 200_000)])


_KEPT = [column for column in observations.c if column.name not in ("host_id", "incarnation")]


def rows(store: ObservationStore) -> list[tuple[object, ...]]:
    """Return the observations' columns of revision 0002, by name (their order differs by backend)."""
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(*_KEPT).order_by(*observations.primary_key))]


def hosts_of_rows(store: ObservationStore) -> set[tuple[object, ...]]:
    """Return the (host_id, incarnation) pairs on the observations."""
    with store.engine.connect() as conn:
        return {
            tuple(row) for row in conn.execute(select(observations.c.host_id, observations.c.incarnation))
        }


def table_names(store: ObservationStore) -> set[str]:
    """Return the names of the store's tables."""
    with store.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_down_to_0002_and_up_again_keeps_every_row(store_url: str) -> None:
    with ObservationStore.open(store_url, host_id="A") as store:
        fill_every_state(store)
        at_head = rows(store)
        cells_at_head = dump(store)["cells"]
        assert hosts_of_rows(store) == {("A", 1)}
    with ObservationStore.open(store_url) as store:
        downgrade(store.engine, "0002")
        assert current_revision(store.engine) == "0002"
        assert "hosts" not in table_names(store)
        assert rows(store) == at_head
        upgrade(store.engine, "head")
        assert current_revision(store.engine) == HEAD_REVISION
        # The rows come back whole; who began them went with the columns.
        assert rows(store) == at_head and dump(store)["cells"] == cells_at_head
        assert hosts_of_rows(store) == {(None, None)}
        assert store.hosts() == []
    with ObservationStore.open(store_url, host_id="A") as store:
        assert (store.incarnation, store.recovered) == (1, 0)  # a new table: a new id
        assert store.fail_pending() == 0  # rows begun before the upgrade are not its own
    with ObservationStore.open(store_url) as store:
        assert store.fail_pending() == 2  # an anonymous store's: begun without a host id


def test_a_file_at_0002_upgrades_on_open_and_keeps_the_payload_last(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        s = store.session("s")
        s.create_cell("big")
        s.begin("big", 0)
        s.record("big", 0, BIG)
        s.create_cell("pending")
        s.begin("pending", 0)
        downgrade(store.engine, "0002")
    before = dump_at_0002(path)
    with ObservationStore.open(path, host_id="worker-1") as store:  # upgrades, then claims
        assert current_revision(store.engine) == HEAD_REVISION
        assert (store.incarnation, store.recovered) == (1, 0)
        s = store.session("s")
        replay = s.begin("big", 0)
        assert replay is not None and replay.outcome == BIG and replay.host_id is None
        assert s.begin("big", 1) is None  # the upgraded row is acknowledged, a new one begun
        assert s.get("big", 1).host_id == "worker-1"  # type: ignore[union-attr]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(observations)")]
        indexes = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_observations_pending'"
        ).fetchall()
    assert columns[-3:] == ["host_id", "incarnation", "payload"]
    assert indexes == [
        ("CREATE INDEX ix_observations_pending ON observations (state) WHERE state = 'pending'",)
    ]
    assert references_and_integrity(path) == ([], "ok")
    assert len(before["observations"]) == 2


def dump_at_0002(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Return the cells and observations of a SQLite file, read straight."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {
            name: conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            for name in ("cells", "observations")
        }
