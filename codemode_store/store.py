"""The facade: ``ObservationStore`` and the per-session handle it gives out.

Each public method validates its arguments (``InvalidInput`` before anything
touches the database), runs one operation of ``operations.py`` in one
transaction, and turns driver errors into :class:`StoreError` subclasses at one
boundary (``errors_of_database``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from . import operations as ops
from .engine import READ_ONLY, Durability, build_engine, to_url
from .errors import InvalidInput, StoreError
from .migrate import ensure_schema
from .observation import CellSummary, Observation
from .translate import errors_of_database
from .validation import canonical_request, check_generation, check_identifier, is_encodable
from .wire import Outcome, encode_payload

__all__ = ["DEFAULT_FAIL_TEXT", "DEFAULT_MAX_PAYLOAD_BYTES", "ObservationStore", "StoreSession"]

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
DEFAULT_FAIL_TEXT = "observation ended before producing a result"

T = TypeVar("T")


def _now() -> int:
    return time.time_ns() // 1000


class ObservationStore:
    """The durable memory of a code-mode host: open it with :meth:`open`."""

    def __init__(self, engine: Engine, *, max_payload_bytes: int) -> None:
        """Wrap an engine whose schema is already at head; prefer :meth:`open`."""
        self._engine = engine
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self.max_payload_bytes = max_payload_bytes

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str] | URL,
        *,
        durability: Durability = "normal",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        busy_timeout: float = 5.0,
    ) -> ObservationStore:
        """Open (creating or upgrading its schema) the store at a path or SQLAlchemy URL.

        ``durability="full"`` makes SQLite fsync every commit (survives power
        loss); ``max_payload_bytes`` caps one stored payload; ``busy_timeout``
        is how many seconds a SQLite writer waits for another's lock.
        """
        if not _is_positive_int(max_payload_bytes):
            raise InvalidInput(f"max_payload_bytes must be a positive integer, not {max_payload_bytes!r}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or busy_timeout < 0:
            raise InvalidInput(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
        engine = build_engine(to_url(url), durability=durability, busy_timeout=float(busy_timeout))
        try:
            with errors_of_database():
                ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, max_payload_bytes=max_payload_bytes)

    # -- plumbing ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine the store runs on."""
        return self._engine

    @property
    def url(self) -> URL:
        """The database URL (render it with ``hide_password=True`` before printing)."""
        return self._engine.url

    def _write(self, operation: Callable[[Connection], T], **key: Any) -> T:
        with errors_of_database(**key), self._engine.begin() as conn:
            return operation(conn)

    def _read(self, operation: Callable[[Connection], T], **key: Any) -> T:
        with errors_of_database(**key), self._reader.begin() as conn:
            return operation(conn)

    def close(self) -> None:
        """Release every pooled connection; the store is not used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> ObservationStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObservationStore({self.url.render_as_string(hide_password=True)!r})"

    # -- store-wide operations ----------------------------------------------------

    def session(self, session_id: str) -> StoreSession:
        """Return the handle of one session; nothing is written until it is used."""
        return StoreSession(self, check_identifier(session_id, "session_id"))

    def pending(self) -> list[Observation]:
        """Return every observation left pending, for example by a crashed host."""
        return self._read(ops.pending)

    def fail_pending(self, error_text: str = DEFAULT_FAIL_TEXT) -> int:
        """Turn every pending observation into ``failed`` with ``error_text``; return how many.

        A host calls this on start, so no generation stays pending after a restart.
        """
        payload = self._failure_payload(error_text)
        return self._write(lambda conn: ops.fail_pending(conn, _now(), payload))

    def end_session(self, session_id: str) -> int:
        """Delete every row of a session; return how many observations went (0 if unknown)."""
        session_id = check_identifier(session_id, "session_id")
        return self._write(lambda conn: ops.end_session(conn, session_id), session_id=session_id)

    def cells(self, session_id: str | None = None) -> list[CellSummary]:
        """Return summaries of the cells of one session, or of every session."""
        if session_id is not None:
            session_id = check_identifier(session_id, "session_id")
        return self._read(lambda conn: ops.cells(conn, session_id), session_id=session_id)

    def _failure_payload(self, error_text: object, **key: Any) -> ops.PreparedPayload:
        if not isinstance(error_text, str):
            raise InvalidInput(f"error_text must be a string, not {type(error_text).__name__}", **key)
        if not is_encodable(error_text):
            raise InvalidInput("error_text is not valid Unicode text (lone surrogate)", **key)
        return self._checked_payload(error_text.encode("utf-8"), **key)

    def _checked_payload(self, data: bytes, **key: Any) -> ops.PreparedPayload:
        if len(data) > self.max_payload_bytes:
            raise InvalidInput(
                f"payload of {len(data)} bytes exceeds max_payload_bytes={self.max_payload_bytes}",
                **key,
            )
        return ops.PreparedPayload(data)


class StoreSession:
    """The operations of SPEC §3 on one session's cells; get it from ``store.session(id)``."""

    __slots__ = ("_store", "session_id")

    def __init__(self, store: ObservationStore, session_id: str) -> None:
        self._store = store
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"StoreSession({self.session_id!r})"

    def _cell(self, cell_id: object) -> str:
        return check_identifier(cell_id, "cell_id", session_id=self.session_id)

    def _generation(self, cell_id: str, generation: object) -> int:
        return check_generation(generation, session_id=self.session_id, cell_id=cell_id)

    def create_cell(self, cell_id: str) -> None:
        """Register an open cell; ``DuplicateCell`` if the session has it already."""
        cell = self._cell(cell_id)
        session = self.session_id
        self._store._write(
            lambda conn: ops.create_cell(conn, _now(), session, cell), session_id=session, cell_id=cell
        )

    def begin(
        self, cell_id: str, generation: int, request: Mapping[str, Any] | None = None
    ) -> Observation | None:
        """Start observe request ``generation``: ``None`` to run it, or the replayed observation."""
        cell = self._cell(cell_id)
        g = self._generation(cell, generation)
        session = self.session_id
        request_json = canonical_request(request, session_id=session, cell_id=cell, generation=g)
        return self._store._write(
            lambda conn: ops.begin(conn, _now(), session, cell, g, request_json),
            session_id=session,
            cell_id=cell,
            generation=g,
        )

    def record(self, cell_id: str, generation: int, outcome: Outcome | Mapping[str, Any]) -> None:
        """Store the outcome of pending ``generation``; a wire object is accepted too."""
        cell = self._cell(cell_id)
        g = self._generation(cell, generation)
        session = self.session_id
        key: dict[str, Any] = {"session_id": session, "cell_id": cell, "generation": g}
        value = _as_outcome(outcome, **key)
        payload = self._store._checked_payload(encode_payload(value), **key)
        self._store._write(lambda conn: ops.record(conn, _now(), session, cell, g, value, payload), **key)

    def fail(self, cell_id: str, generation: int, error_text: str) -> None:
        """Mark pending ``generation`` failed: it replays as ``error_text``."""
        cell = self._cell(cell_id)
        g = self._generation(cell, generation)
        session = self.session_id
        key: dict[str, Any] = {"session_id": session, "cell_id": cell, "generation": g}
        payload = self._store._failure_payload(error_text, **key)
        self._store._write(lambda conn: ops.fail(conn, _now(), session, cell, g, payload), **key)

    def release(self, cell_id: str, generation: int) -> bool:
        """Acknowledge ``generation``; ``True`` if this call dropped its payload."""
        cell = self._cell(cell_id)
        g = self._generation(cell, generation)
        session = self.session_id
        return self._store._write(
            lambda conn: ops.release(conn, _now(), session, cell, g),
            session_id=session,
            cell_id=cell,
            generation=g,
        )

    def close_cell(self, cell_id: str) -> None:
        """Mark the cell closed (no later generation will come); a no-op if closed."""
        cell = self._cell(cell_id)
        session = self.session_id
        self._store._write(lambda conn: ops.close_cell(conn, session, cell), session_id=session, cell_id=cell)

    def get(self, cell_id: str, generation: int) -> Observation | None:
        """Return one observation, or ``None`` if the cell has no such generation."""
        cell = self._cell(cell_id)
        g = self._generation(cell, generation)
        session = self.session_id
        return self._store._read(
            lambda conn: ops.get(conn, session, cell, g), session_id=session, cell_id=cell, generation=g
        )

    def history(self, cell_id: str) -> list[Observation]:
        """Return every observation of the cell, in generation order."""
        cell = self._cell(cell_id)
        session = self.session_id
        return self._store._read(
            lambda conn: ops.history(conn, session, cell), session_id=session, cell_id=cell
        )

    def cells(self) -> list[CellSummary]:
        """Return summaries of this session's cells."""
        return self._store.cells(self.session_id)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _as_outcome(outcome: object, **key: Any) -> Outcome:
    if isinstance(outcome, Outcome):
        return outcome
    if isinstance(outcome, Mapping):
        try:
            wire_cell = Outcome.wire_cell_id(outcome)
            value = Outcome.from_wire(outcome)
        except StoreError as exc:
            raise InvalidInput(exc.detail, **key) from exc
        if wire_cell != key["cell_id"]:
            raise InvalidInput(f"the outcome is for cell {wire_cell!r}", **key)
        return value
    raise InvalidInput(f"outcome must be an Outcome or a wire object, not {type(outcome).__name__}", **key)
