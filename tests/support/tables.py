"""Read a store's tables straight, behind its back: the ground truth tests compare against."""

from __future__ import annotations

from sqlalchemy import select, text

from codemode_store import ObservationStore
from codemode_store.schema import observations


def dump(store: ObservationStore) -> dict[str, list[tuple[object, ...]]]:
    """Return every row of every table of the store, in a stable order."""
    tables = {
        "cells": "SELECT * FROM cells ORDER BY session_id, cell_id",
        "observations": "SELECT * FROM observations ORDER BY session_id, cell_id, generation",
        "alembic_version": "SELECT * FROM alembic_version",
    }
    with store.engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(text(query))] for name, query in tables.items()}


def stored(store: ObservationStore, column: str, generation: int) -> bytes | None:
    """Return column ``column`` of the row (s, c, generation), read straight from the table."""
    o = observations.c
    query = select(o[column]).where(o.session_id == "s", o.cell_id == "c", o.generation == generation)
    with store.engine.connect() as conn:
        value = conn.execute(query).scalar_one()
    return None if value is None else bytes(value)
