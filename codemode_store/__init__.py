"""codemode_store: the durable memory of a code-mode host.

Every outcome a host hands to its agent core is retained, keyed by
``(session, cell, generation)``, until the core acknowledges it, so a retried
request gets the same answer even after the host restarts. The protocol's
rules are in ``docs/protocol.md``; the API in a few lines is in the README.
"""

from __future__ import annotations

from . import layout
from .observation import CellSummary, Observation
from .store import ObservationStore, StoreSession
from .wire import ImageItem, Outcome, TextItem

__all__ = [
    "CellSummary",
    "ImageItem",
    "Observation",
    "ObservationStore",
    "Outcome",
    "StoreSession",
    "TextItem",
    "__version__",
]

__version__ = "0.1.0"

# In a source checkout the CLI and the migrations sit beside the package.
layout.install_checkout_finder()
