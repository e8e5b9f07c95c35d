"""The host loop: six committed transactions per cell, store against raw and peer.

Per cell: create, begin 0, record yielded (2 KB text), begin 1, record
completed (2 KB text), release 1. The raw sqlite3 host does the same steps
(see ``raw.py``); persist-queue's ``SQLiteAckQueue`` does put/get/ack of the
same two wire outcomes, six committed transactions as well. Each runs at both
durability settings, the raw host and the peer with the store's ``synchronous``.
The store runs as a host of several would, opened with a host id (its lease
renewed in the background, ``begin`` fenced, ``record`` owned); ``anonymous_*``
is the same store opened without one.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from codemode_store import ObservationStore, Outcome

from .common import Rounds, alternate, text_outcome
from .raw import RawHost

__all__ = [
    "HandWrittenHost",
    "HostPayloads",
    "Variants",
    "host_variants",
    "peer_available",
    "raw_cells",
    "store_cells",
]

PAYLOAD_SIZE = 2048


@dataclass(frozen=True)
class HostPayloads:
    """The two outcomes of a cell, as the store, the raw host and the peer take them."""

    yielded: Outcome
    completed: Outcome

    @classmethod
    def build(cls, size: int = PAYLOAD_SIZE) -> HostPayloads:
        """Return the payloads of the host loop: two text outcomes of ``size`` characters."""
        return cls(text_outcome(size, "yielded"), text_outcome(size, "completed"))

    def bodies(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the wire bodies (no ``cell_id``) the raw host stores."""
        yielded, completed = self.yielded.to_wire("c"), self.completed.to_wire("c")
        del yielded["cell_id"], completed["cell_id"]
        return yielded, completed


def store_cells(store: ObservationStore, session_id: str, cells: list[str], payloads: HostPayloads) -> None:
    """Run the host loop through the store for each of ``cells``."""
    session = store.session(session_id)
    yielded, completed = payloads.yielded, payloads.completed
    for cell in cells:
        session.create_cell(cell)
        session.begin(cell, 0)
        session.record(cell, 0, yielded)
        session.begin(cell, 1)
        session.record(cell, 1, completed)
        session.release(cell, 1)


class HandWrittenHost(Protocol):
    """A host written by hand against the database: ``raw.RawHost``, ``postgres.NaiveHost``."""

    def create_cell(self, session: str, cell: str) -> None: ...
    def begin(self, session: str, cell: str, generation: int) -> object: ...
    def record(self, session: str, cell: str, generation: int, body: dict[str, Any]) -> None: ...
    def release(self, session: str, cell: str, generation: int) -> object: ...


def raw_cells(raw: HandWrittenHost, session_id: str, cells: list[str], payloads: HostPayloads) -> None:
    """Run the host loop through a hand-written host (raw sqlite3, naive psycopg) for each of ``cells``."""
    yielded, completed = payloads.bodies()
    for cell in cells:
        raw.create_cell(session_id, cell)
        raw.begin(session_id, cell, 0)
        raw.record(session_id, cell, 0, yielded)
        raw.begin(session_id, cell, 1)
        raw.record(session_id, cell, 1, completed)
        raw.release(session_id, cell, 1)


def peer_available() -> bool:
    """Tell whether persist-queue (the ``bench`` extra) is installed."""
    try:
        import persistqueue  # noqa: F401
    except ImportError:
        return False
    return True


def open_peer(folder: Path, synchronous: str | None) -> Any:
    """Open a persist-queue ``SQLiteAckQueue`` in ``folder`` (it sets WAL itself).

    ``synchronous`` (``NORMAL`` or ``FULL``) gives it the store's durability;
    ``None`` keeps its default (``FULL``: an fsync per commit).
    """
    from persistqueue import SQLiteAckQueue

    queue = SQLiteAckQueue(str(folder), auto_resume=False)
    if synchronous is not None:
        queue._putter.execute(f"PRAGMA synchronous = {synchronous}")
    return queue


def peer_cells(queue: Any, count: int, payloads: HostPayloads) -> None:
    """Put, get and ack the two outcomes of ``count`` cells (six commits a cell)."""
    yielded, completed = payloads.yielded.to_wire("c"), payloads.completed.to_wire("c")
    for _ in range(count):
        queue.put(yielded)
        queue.ack(queue.get(block=False))
        queue.put(completed)
        queue.ack(queue.get(block=False))


def peer_tidy(queue: Any) -> None:
    """Delete the acknowledged rows (untimed), so the peer's scan for the next item stays short."""
    queue.clear_acked_data(max_delete=None, keep_latest=None)


Variants = dict[str, Callable[[], object]]

#: The store's durability settings and the ``synchronous`` each one means.
DURABILITIES = {"normal": "NORMAL", "full": "FULL"}


@contextmanager
def host_variants(
    folder: Path, cells_per_round: int, payloads: HostPayloads, with_peer: bool
) -> Iterator[tuple[Variants, Callable[[], None]]]:
    """Yield the host-loop variants (one batch of cells each) and an untimed tidy step.

    At each durability (``normal``, ``full``): ``store_<d>`` (with a host id),
    ``anonymous_<d>`` (without), ``raw_<d>`` (raw sqlite3 with the same
    ``synchronous``) and, if installed, ``peer_<d>`` (persist-queue with the
    same ``synchronous``).
    """
    counter = itertools.count()
    stores: list[ObservationStore] = []
    raws: list[RawHost] = []
    peers: dict[str, Any] = {}
    variants: Variants = {}

    def batch() -> list[str]:
        start = next(counter) * cells_per_round
        return [f"cell-{n}" for n in range(start, start + cells_per_round)]

    try:
        for durability, synchronous in DURABILITIES.items():
            store = ObservationStore.open(
                folder / f"store-{durability}.db",
                durability=durability,  # type: ignore[arg-type]
                host_id=f"bench-{durability}",
            )
            anonymous = ObservationStore.open(folder / f"anonymous-{durability}.db", durability=durability)  # type: ignore[arg-type]
            stores += [store, anonymous]
            ObservationStore.open(folder / f"raw-{durability}.db").close()  # the same schema, by Alembic
            raw = RawHost(str(folder / f"raw-{durability}.db"), synchronous=synchronous)
            raws.append(raw)
            variants[f"store_{durability}"] = lambda store=store: store_cells(store, "s", batch(), payloads)
            variants[f"anonymous_{durability}"] = lambda store=anonymous: store_cells(
                store, "s", batch(), payloads
            )
            variants[f"raw_{durability}"] = lambda raw=raw: raw_cells(raw, "s", batch(), payloads)
            if with_peer:
                queue = peers[f"peer_{durability}"] = open_peer(folder / f"peer-{durability}", synchronous)
                variants[f"peer_{durability}"] = lambda queue=queue: peer_cells(
                    queue, cells_per_round, payloads
                )

        def tidy() -> None:
            for queue in peers.values():
                peer_tidy(queue)

        yield variants, tidy
    finally:
        for store in stores:
            store.close()
        for raw in raws:
            raw.close()
        for queue in peers.values():
            queue.close()


def run_host_loop(cells_per_round: int, rounds: int, with_peer: bool) -> Rounds:
    """Return each variant's seconds per round of ``cells_per_round`` cells."""
    payloads = HostPayloads.build()
    with (
        tempfile.TemporaryDirectory(prefix="cms-bench-") as tmp,
        host_variants(Path(tmp), cells_per_round, payloads, with_peer) as (variants, tidy),
    ):
        for run in variants.values():  # warm up: first connections, statement caches
            run()
        return alternate(variants, rounds, tidy)
