"""Fixtures and hooks of the suite: a store per backend and front end, and stores aged for gc.

``store_url`` is parametrised by backend: ``sqlite`` (a real file under
``tmp_path``) always, ``postgres`` when ``CODEMODE_STORE_TEST_POSTGRES_URL``
names a server (see docs/operations.md, "Tests on PostgreSQL"). Each PostgreSQL test gets a database of
its own, created empty on that server and dropped afterwards. When the variable
is unset the PostgreSQL tests skip, all under one summary line; when it is set
and the server cannot be reached, the run stops and fails.

``store`` opens the sync ``ObservationStore``. In a module marked
``pytest.mark.front_ends``, each test of ``store`` also runs on the asyncio front
end (``AsyncObservationStore`` behind the sync surface, tests/support/async_adapter.py),
so the protocol tests check both front ends without being copied.

The helpers tests call (``dump``, ``fill``, ``cli``, ...) are in tests/support/.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from support.async_adapter import BlockingStore
from support.backends import BACKENDS, FRONT_ENDS, POSTGRES_URL_VARIABLE
from support.idle_stores import age, fill
from support.server_programs import needs_server_programs

from codemode_store import ObservationStore
from scripts.pg_cluster import Cluster

POSTGRES_SKIP_REASON = (
    f"PostgreSQL tests skipped: set {POSTGRES_URL_VARIABLE} to a server URL "
    '(eval "$(scripts/start-postgres.sh)" starts one)'
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``front_ends`` marker."""
    config.addinivalue_line(
        "markers",
        "front_ends(async_backends=BACKENDS): run this module's tests of ``store`` on the sync"
        " and the async front end; the async one on the backends named",
    )


def _param(backend: str, front_end: str | None = None) -> Any:
    """Return the parameter of a backend (or a backend and front end), marked ``postgres`` if it is one."""
    marks = [pytest.mark.postgres] if backend == "postgres" else []
    if front_end is None:
        return pytest.param(backend, id=backend, marks=marks)
    return pytest.param(backend, front_end, id=f"{backend}-{front_end}", marks=marks)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test of ``backend`` on every backend; in a ``front_ends`` module, on every front end too.

    Both are parametrised here, not by fixture ``params``, so that a module can
    leave out pairs: the async front end on PostgreSQL, say, where every test
    creates and drops a database of its own.
    """
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("front_ends")
    if marker is None or "front_end" not in metafunc.fixturenames:
        metafunc.parametrize("backend", [_param(b) for b in BACKENDS], indirect=True)
        return
    async_backends = marker.kwargs.get("async_backends", BACKENDS)
    pairs = [
        _param(backend, front_end)
        for backend in BACKENDS
        for front_end in FRONT_ENDS
        if front_end == "sync" or backend in async_backends
    ]
    metafunc.parametrize(("backend", "front_end"), pairs, indirect=True)


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


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a test runs on (parametrised by ``pytest_generate_tests``)."""
    return str(request.param)


@pytest.fixture
def front_end(request: pytest.FixtureRequest) -> str:
    """The front end ``store`` opens: ``sync``, or each of ``FRONT_ENDS`` in a ``front_ends`` module."""
    return str(getattr(request, "param", "sync"))


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL (or path) of an empty database on ``backend``."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "store.db")


@pytest.fixture
def store(store_url: str, front_end: str) -> Iterator[ObservationStore | BlockingStore]:
    """An open store on a fresh database of each backend, through the front end ``front_end``."""
    # BlockingStore offers ObservationStore's surface, so the tests take either.
    opener = BlockingStore if front_end == "async" else ObservationStore
    with opener.open(store_url) as opened:
        yield opened


@pytest.fixture
def aged_url(store_url: str) -> str:
    """A store with session "old" idle for 8 days and session "new" in use."""
    with ObservationStore.open(store_url) as store:
        fill(store, "old")
        fill(store, "new")
        age(store, "old", 8)
    return store_url


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway durable PostgreSQL cluster of the module's own (to crash or freeze), removed afterwards."""
    needs_server_programs()
    started = Cluster.start()
    try:
        yield started
    finally:
        started.remove()
