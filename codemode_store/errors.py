"""The exceptions of codemode_store: one root, one subclass per rejection.

Every error carries the key it is about (``session_id``, ``cell_id``,
``generation``) as attributes and names it in its message, so a log line alone
tells which observation was refused. Every class is exported from
``codemode_store`` too; ``docs/errors.md`` says, for each, when it is raised and
whether a host should retry, resync or give up. The errors only the command
line tools raise are in ``codemode_store.cli_support.errors``. An error means nothing was
written: every operation is one transaction.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

__all__ = [
    "AlreadyReleased",
    "CellClosed",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "DuplicateCell",
    "FutureGeneration",
    "GenerationConflict",
    "HostFenced",
    "InvalidInput",
    "NotADatabase",
    "NotPending",
    "NotReleasable",
    "ObservationInProgress",
    "SchemaError",
    "StoreError",
    "UnknownCell",
]


class ErrorKey(TypedDict, total=False):
    """What an error is about: the keyword arguments of ``StoreError`` that name it.

    Internal (not in ``__all__``): the type of the key an operation hands to the
    error boundary (``translate.errors_of_database``).
    """

    session_id: str | None
    cell_id: str | None
    generation: int | None


class StoreError(Exception):
    """Root of every error the store raises.

    ``detail`` is the reason; ``session_id``, ``cell_id`` and ``generation`` name
    what it is about (``None`` where an error is not about one of them).
    """

    def __init__(
        self,
        detail: str,
        *,
        session_id: str | None = None,
        cell_id: str | None = None,
        generation: int | None = None,
    ) -> None:
        self.detail = detail
        self.session_id = session_id
        self.cell_id = cell_id
        self.generation = generation
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.session_id is not None:
            where.append(f"session {self.session_id!r}")
        if self.cell_id is not None:
            where.append(f"cell {self.cell_id!r}")
        if self.generation is not None:
            where.append(f"generation {self.generation}")
        if not where:
            return self.detail
        return f"{', '.join(where)}: {self.detail}"


class InvalidInput(StoreError, ValueError):
    """An argument is malformed (id, generation, outcome, size, option); give up: nothing was written."""


class UnknownCell(StoreError, LookupError):
    """The session does not know this cell (never created, or purged); resync: a wire desync."""


class DuplicateCell(StoreError):
    """``create_cell`` named a cell the session already has; resync (often a retry that committed)."""


class FutureGeneration(StoreError):
    """The generation is beyond the next one the cell can take; resync: Core is ahead of the store."""


class CellClosed(StoreError):
    """The cell is closed: no later generation will come; resync: tell Core the cell is done."""


class ObservationInProgress(StoreError):
    """The generation (or its predecessor) is still pending; retry later (or ``fail_pending`` on start).

    ``host_id`` names the host the generation is pending under, when a
    ``record`` or ``fail`` came from another host or incarnation (``None``
    otherwise, and for a generation begun by a store without host id).
    """

    def __init__(self, detail: str, *, host_id: str | None = None, **key: Unpack[ErrorKey]) -> None:
        self.host_id = host_id
        super().__init__(detail, **key)


class NotPending(StoreError):
    """``record`` or ``fail`` named a generation that is not pending; resync with ``get``."""


class GenerationConflict(StoreError):
    """A retry disagrees with what the store holds for the generation; replay the stored one."""


class AlreadyReleased(StoreError):
    """The generation was released: its payload is gone; resync: Core is out of step, never re-run."""


class NotReleasable(StoreError):
    """The generation cannot be released (pending, failed, or non-terminal); give up on this ack."""


class HostFenced(StoreError):
    """A later open of the same host id superseded this store's incarnation; stop the process.

    Two processes with one host id is a deployment error: the older one must
    stop serving (its ``begin`` is refused and wrote nothing), and its pending
    generations were failed by the newer one's open. ``host_id`` and
    ``incarnation`` name the superseded incarnation.
    """

    def __init__(
        self, detail: str, *, host_id: str, incarnation: int | None, **key: Unpack[ErrorKey]
    ) -> None:
        self.host_id = host_id
        self.incarnation = incarnation
        super().__init__(detail, **key)


class SchemaError(StoreError):
    """The schema is not one this version can use (newer, or not a store); give up: upgrade the package."""


class DatabaseError(StoreError):
    """The database refused the operation (I/O, disk full, read-only, ...); retry once the cause is fixed."""


class NotADatabase(DatabaseError):
    """The file is not a database this store can open; give up: it was left untouched."""


class DatabaseBusy(DatabaseError):
    """Another writer held the lock past the busy timeout (or a deadlock); retry with a back-off."""


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached, or went away during the call; retry later.

    Raised when the server refuses the connection, does not complete it within
    the connect timeout, is shutting down or starting up, or the connection
    breaks mid-call. A call that broke before it committed changed nothing; one
    that broke while committing may have committed, and its retry gets the
    rule's answer (a replay, ``AlreadyReleased``, an idempotent ``record``).
    The same store object works again once the server is back: dead pooled
    connections are discarded.
    """
