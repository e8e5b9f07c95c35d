"""Stores to move and ways to compare them, for the copy, backup and export/import tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.schema import metadata
from codemode_store.wire import ImageItem

#: A 1x1 PNG as a data URL: an image item of the wire shape.
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def populate(store: ObservationStore, session_id: str) -> None:
    """Give a session rows of every kind: each state, each outcome kind, requests, images, a closed cell.

    - ``done``: 0 released (implicitly), 1 completed and released, cell closed.
    - ``streaming``: 0 released, 1 yielded retained (with a request), open.
    - ``broken``: 0 failed.
    - ``running``: 0 pending (a crashed host's row).
    - ``lost``: 0 missing, retained, open.
    - ``stopped``: 0 terminated with an image, retained, cell closed.
    - ``idle``: no observation yet.
    """
    s = store.session(session_id)
    s.create_cell("done")
    s.begin("done", 0)
    s.record("done", 0, Outcome.yielded([TextItem("partial " * 20)]))
    s.begin("done", 1)
    s.record("done", 1, Outcome.completed([TextItem("result " * 40)], error_text="a warning"))
    s.release("done", 1)
    s.create_cell("streaming")
    s.begin("streaming", 0, {"yield_time_ms": 100})
    s.record("streaming", 0, Outcome.yielded([TextItem("line 1\n")]))
    s.begin("streaming", 1, {"yield_time_ms": 10000})
    s.record("streaming", 1, Outcome.yielded([TextItem("line 2\n" * 100)]))
    s.create_cell("broken")
    s.begin("broken", 0)
    s.fail("broken", 0, "the runtime died")
    s.create_cell("running")
    s.begin("running", 0)
    s.create_cell("lost")
    s.begin("lost", 0)
    s.record("lost", 0, Outcome.missing())
    s.create_cell("stopped")
    s.begin("stopped", 0)
    s.record("stopped", 0, Outcome.terminated([ImageItem(PNG, detail="low"), TextItem("stopped")]))
    s.create_cell("idle")


def rows(store: ObservationStore) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of every table of the schema, typed by SQLAlchemy, in key order.

    Unlike ``tables.dump`` (raw SQL), the values compare equal across backends
    (booleans are booleans on both).
    """
    found = {}
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            query = select(*table.c).order_by(*table.primary_key.columns)
            found[table.name] = [tuple(row) for row in conn.execute(query)]
    return found


def of_sessions(
    found: dict[str, list[tuple[Any, ...]]], *session_ids: str
) -> dict[str, list[tuple[Any, ...]]]:
    """Return the rows of ``rows()`` that belong to the sessions named (store-wide tables whole)."""
    picked = {}
    for table in metadata.sorted_tables:
        if "session_id" not in table.c:
            picked[table.name] = found[table.name]
            continue
        index = list(table.c.keys()).index("session_id")
        picked[table.name] = [row for row in found[table.name] if row[index] in session_ids]
    return picked
