"""A code-mode host at the level of the wire: requests in, answers out, each answer stored first.

:class:`Host` answers the protocol's requests (create, observe, release, close)
as JSON objects, from an :class:`~codemode_store.ObservationStore` and a
pluggable :class:`Runtime`; :func:`serve` speaks it as JSON lines;
:class:`CommandRuntime` runs each cell's source as a shell command. The
reference host, ``python -m codemode_store.host --db PATH``, puts them together
(see docs/host.md).
"""

from __future__ import annotations

from .commands import CommandRuntime
from .runtime import Runtime
from .server import OBSERVATION_FAILED, RESTART_TEXT, RUNTIME_FAILURE, Host, serve

__all__ = [
    "OBSERVATION_FAILED",
    "RESTART_TEXT",
    "RUNTIME_FAILURE",
    "CommandRuntime",
    "Host",
    "Runtime",
    "serve",
]
