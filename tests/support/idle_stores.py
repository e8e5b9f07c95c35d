"""Stores with idle sessions and tampered rows, for the gc, check and vacuum tests.

The ``aged_url`` fixture of ``tests/conftest.py`` builds its store with these.
"""

from __future__ import annotations

from sqlalchemy import text

from codemode_store import ObservationStore, Outcome, TextItem

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


def payload_bytes(store: ObservationStore, session_id: str) -> int:
    """Return the bytes of the payloads a session still holds, read through the API."""
    return sum(cell.retained_bytes for cell in store.cells(session_id))


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


def big(index: int) -> Outcome:
    """A completed outcome of about 100 KB."""
    return Outcome.completed([TextItem(f"{index:03d}" + "x" * 100_000)])
