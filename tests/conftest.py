"""Fixtures shared by the suite: a store per backend, and a dump of its tables.

``store_url`` is parametrised by backend: ``sqlite`` (a real file under
``tmp_path``) always, ``postgres`` when ``CODEMODE_STORE_TEST_POSTGRES_URL``
names a server (see docs/operations.md, "Tests on PostgreSQL"). Each PostgreSQL test gets a database of
its own, created empty on that server and dropped afterwards. When the variable
is unset the PostgreSQL tests skip, all under one summary line; when it is set
and the server cannot be reached, the run stops and fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, select, text

from codemode_store import ObservationStore
from codemode_store.schema import observations

#: The ``aged_url`` fixture and the helpers of the gc, check and vacuum tests.
pytest_plugins = ["idle_stores"]

POSTGRES_URL_VARIABLE = "CODEMODE_STORE_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = (
    f"PostgreSQL tests skipped: set {POSTGRES_URL_VARIABLE} to a server URL "
    '(eval "$(scripts/start-postgres.sh)" starts one)'
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pytest_report_header() -> str:
    """Name the PostgreSQL server the run uses (password hidden), if any."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        return "backends: sqlite (PostgreSQL tests skip: see the skip summary)"
    return f"backends: sqlite, postgres at {make_url(url).render_as_string(hide_password=True)}"


def _skip_without_server() -> None:
    pytest.skip(POSTGRES_SKIP_REASON)


#: The start of the reason tests/test_powerloss.py gives when FUSE cannot be mounted.
POWERLOSS_SKIP_PREFIX = "power-loss tests skipped:"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report every PostgreSQL (or FUSE) skip at one place, so ``-ra`` sums them up in one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple):
        path, _line, reason = report.longrepr
        if POSTGRES_SKIP_REASON in reason:
            code = _skip_without_server.__code__
            report.longrepr = (code.co_filename, code.co_firstlineno, reason)
        elif POWERLOSS_SKIP_PREFIX in reason:
            report.longrepr = (path, None, reason)  # one place: the module
    return report


@pytest.fixture(scope="session")
def postgres_admin(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An autocommit engine on the test server, for creating and dropping databases.

    Unset variable: the test skips. Set, but no server answers: the whole run
    stops and fails, since the PostgreSQL half of the suite cannot be trusted.
    """
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        _skip_without_server()
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        message = f"{POSTGRES_URL_VARIABLE} is set, but {shown} cannot be reached: {reason}"
    else:
        yield engine
        engine.dispose()
        return
    request.session.shouldstop = message
    pytest.fail(message, pytrace=False)


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped after the test."""
    # The name is made here, never from test input, so it may be spelled into the SQL.
    name = f"test_{uuid.uuid4().hex}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a process the test started may still hold a connection.
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a parametrised test runs on."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL (or path) of an empty database on ``backend``."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
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


def stored(store: ObservationStore, column: str, generation: int) -> bytes | None:
    """Return column ``column`` of the row (s, c, generation), read straight from the table."""
    o = observations.c
    query = select(o[column]).where(o.session_id == "s", o.cell_id == "c", o.generation == generation)
    with store.engine.connect() as conn:
        value = conn.execute(query).scalar_one()
    return None if value is None else bytes(value)
