"""Lease renewal: how many writes a host's lease costs, counted at the driver.

A store opened with a host id renews its lease every ``lease_seconds / 3`` in
the background. This opens one such store (on a SQLite file, and on PostgreSQL
when a server is given), lets it sit idle for a number of lease periods, and
counts the statements that write the ``hosts`` table, through SQLAlchemy's
cursor events (which the store's driver fires for whoever listens). The
figure is writes per ``lease_seconds / 3``: at most 1 is the target.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from codemode_store import ObservationStore

__all__ = ["measure"]


def _count_lease_writes(url: str | Path, lease_seconds: float, periods: int) -> dict[str, Any]:
    with ObservationStore.open(url, host_id="bench-lease", lease_seconds=lease_seconds) as store:
        writes: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE HOSTS"):
                writes.append(statement)

        event.listen(store.engine, "before_cursor_execute", seen)
        try:
            started = time.monotonic()
            time.sleep(periods * lease_seconds / 3)
            elapsed = time.monotonic() - started
        finally:
            event.remove(store.engine, "before_cursor_execute", seen)
    intervals = elapsed / (lease_seconds / 3)
    return {
        "lease_seconds": lease_seconds,
        "seconds": round(elapsed, 3),
        "renewal_intervals": round(intervals, 1),
        "writes": len(writes),
        "writes_per_interval": round(len(writes) / intervals, 3),
    }


def measure(folder: Path, postgres_url: str | None, lease_seconds: float, periods: int) -> dict[str, Any]:
    """Count lease writes of an idle identified store over ``periods`` renewal intervals, per backend."""
    result = {"sqlite": _count_lease_writes(folder / "lease.db", lease_seconds, periods)}
    if postgres_url:
        from .postgres import scratch_database

        with scratch_database(postgres_url) as url:
            result["postgres"] = _count_lease_writes(
                url.render_as_string(hide_password=False), lease_seconds, periods
            )
    return result
