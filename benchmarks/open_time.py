"""Open time of an up-to-date store against a bare SQLAlchemy engine; run ``python -m benchmarks.open_time``.

Three ways to get a usable connection to the same file, alternated round after
round (the machine is shared), each timed from nothing to a closed engine:

- ``bare``: ``create_engine(url)``, connect, ``SELECT 1``, dispose (``SELECT 1``
  never reads the file, so this leaves out SQLite's own cost of opening it);
- ``bare_read``: the same with a query that reads the file (the stamped revision),
  which pays SQLite's opening of a WAL database (schema, ``-shm``, and the
  checkpoint when the last connection closes);
- ``store``: ``ObservationStore.open(path)`` (engine, listeners, the one-SELECT
  revision check), one read, close;
- ``alembic``: what open would cost if it asked Alembic every time: the bare
  engine plus ``ScriptDirectory`` loading and ``MigrationContext`` revision read.

Prints the median of the rounds for each and its ratios to ``bare`` and ``bare_read``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from codemode_store import ObservationStore
from codemode_store.migrate import alembic_config


def bare(path: Path) -> None:
    """Open a plain engine on the file and run one trivial query."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()
    engine.dispose()


def bare_read(path: Path) -> None:
    """Open a plain engine on the file and read one row from it."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()


def store(path: Path) -> None:
    """Open the store (fast path: already at head)."""
    ObservationStore.open(path).close()


def alembic(path: Path) -> None:
    """Open a plain engine and compare the stamped revision with Alembic's head."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()
        assert MigrationContext.configure(conn).get_current_revision() in heads
    engine.dispose()


def measure(rounds: int) -> dict[str, list[float]]:
    """Time each variant ``rounds`` times, alternating their order."""
    variants: dict[str, Callable[[Path], None]] = {
        "bare": bare,
        "bare_read": bare_read,
        "store": store,
        "alembic": alembic,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.db"
        ObservationStore.open(path).close()  # create it: every later open is at head
        for variant in variants.values():  # warm imports and caches
            variant(path)
        for round_number in range(rounds):
            order = list(variants.items())
            if round_number % 2:
                order.reverse()
            for name, variant in order:
                start = time.perf_counter()
                variant(path)
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    """Measure and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    times = measure(args.rounds)
    base = statistics.median(times["bare"])
    read = statistics.median(times["bare_read"])
    print(f"open time, median of {args.rounds} rounds")
    for name, samples in times.items():
        median = statistics.median(samples)
        ratios = f"x{median / base:5.2f} of bare   x{median / read:5.2f} of bare_read"
        print(f"  {name:10} {median * 1000:8.3f} ms   {ratios}")


if __name__ == "__main__":
    main()
