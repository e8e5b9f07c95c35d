"""Fixtures shared by the suite: a store per backend, and a dump of its tables.

``store_url`` is parametrised by backend: ``sqlite`` (a real file under
``tmp_path``) always, ``postgres`` when ``CODEMODE_STORE_TEST_POSTGRES_URL``
names a server (see README, "Tests").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from codemode_store import ObservationStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a parametrised test runs on."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> str:
    """A URL (or path) of an empty database on ``backend``."""
    return str(tmp_path / "store.db")


@pytest.fixture
def store(store_url: str) -> Iterator[ObservationStore]:
    """An open store on a fresh database of each backend."""
    with ObservationStore.open(store_url) as opened:
        yield opened


def dump(store: ObservationStore) -> dict[str, list[tuple[object, ...]]]:
    """Return every row of every table of the store, in a stable order."""
    tables = {
        "cells": "SELECT * FROM cells ORDER BY session_id, cell_id",
        "observations": "SELECT * FROM observations ORDER BY session_id, cell_id, generation",
        "alembic_version": "SELECT * FROM alembic_version",
    }
    with store.engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(text(query))] for name, query in tables.items()}
