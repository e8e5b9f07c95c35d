"""codemode_store: the durable memory of a code-mode host.

Every outcome a host hands to its agent core is retained, keyed by
``(session, cell, generation)``, until the core acknowledges it, so a retried
request gets the same answer even after the host restarts. The protocol's
rules are in ``docs/protocol.md``; the API in a few lines is in the README.
The error classes are exported here too; ``docs/errors.md`` says when each is
raised and what a host should do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import layout
from .errors import (
    AlreadyReleased,
    CellClosed,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    HostFenced,
    InvalidInput,
    NotADatabase,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    SchemaError,
    StoreError,
    UnknownCell,
)

if TYPE_CHECKING:
    from .hosts import HostInfo
    from .observation import CellSummary, Observation
    from .store import ObservationStore, StoreSession
    from .wire import ImageItem, Outcome, TextItem

__all__ = [
    "AlreadyReleased",
    "CellClosed",
    "CellSummary",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "DuplicateCell",
    "FutureGeneration",
    "GenerationConflict",
    "HostFenced",
    "HostInfo",
    "ImageItem",
    "InvalidInput",
    "NotADatabase",
    "NotPending",
    "NotReleasable",
    "Observation",
    "ObservationInProgress",
    "ObservationStore",
    "Outcome",
    "SchemaError",
    "StoreError",
    "StoreSession",
    "TextItem",
    "UnknownCell",
    "__version__",
]

__version__ = "0.1.0"

# In a source checkout the CLI and the migrations sit beside the package.
layout.install_checkout_finder()

# The store pulls in SQLAlchemy, which costs a tenth of a second: the public
# classes are imported on first use (PEP 562), so that `codemode-store --version`
# starts at once and a tool that needs only the wire model never loads SQLAlchemy.
_LAZY = {
    "CellSummary": "observation",
    "HostInfo": "hosts",
    "Observation": "observation",
    "ObservationStore": "store",
    "StoreSession": "store",
    "ImageItem": "wire",
    "Outcome": "wire",
    "TextItem": "wire",
}


def __getattr__(name: str) -> Any:
    """Import the store's classes on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, the lazily imported ones included."""
    return sorted(set(globals()) | set(__all__))
