"""Throwaway PostgreSQL clusters for the tests that crash or freeze a server of their own.

Those tests (server loss, frozen server) need PostgreSQL's server programs: they
skip with one line without them, and fail under ``CI=true``, where CI installs
them. ``returns_within`` bounds every call that might hang.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from scripts.pg_cluster import find_bindir

#: A bound on every wait, so that a hang fails the test instead of stalling the run.
LIVENESS = 60.0

NO_SERVER_PROGRAMS = "server-loss tests skipped: PostgreSQL's initdb/pg_ctl are not installed"


def needs_server_programs() -> None:
    """Skip the test without PostgreSQL's server programs (fail it under ``CI=true``)."""
    if find_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NO_SERVER_PROGRAMS}, and CI must install them", pytrace=False)
        pytest.skip(NO_SERVER_PROGRAMS)


def returns_within(limit: float, call: Callable[[], object]) -> object:
    """Run ``call`` in a thread; return its result or exception; fail if it runs past ``limit`` s."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"the call hung for more than {limit} s"
    return outcome[0]
