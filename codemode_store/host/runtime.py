"""The seam between the host and whatever runs cells: a small ``Protocol``."""

from __future__ import annotations

from typing import Protocol

from ..wire import Outcome

__all__ = ["Runtime"]


class Runtime(Protocol):
    """What runs the cells of one host; the host stores every answer it gives.

    A runtime knows only the cells it started itself: after a host restart, a
    cell of the previous runtime is unknown, and ``observe`` and ``terminate``
    answer ``Outcome.missing()`` for it.
    """

    def create(self, cell_id: str, source: str) -> None:
        """Start running ``source`` as cell ``cell_id``."""

    def observe(self, cell_id: str, yield_time_ms: int) -> Outcome:
        """Return the cell's output since the last observe.

        ``completed`` (with ``error_text`` for a failure) as soon as the cell
        finishes, ``yielded`` once ``yield_time_ms`` passes while it still runs,
        ``missing`` if the runtime does not know the cell.
        """

    def terminate(self, cell_id: str) -> Outcome:
        """Stop the cell and return ``terminated`` with its last output (``missing`` if unknown)."""
