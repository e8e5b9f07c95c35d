"""The wire-level host: the protocol's requests in, its answers out, every answer stored first.

A :class:`Host` serves one Core session from an :class:`ObservationStore` and a
:class:`~codemode_store.host.runtime.Runtime`. Requests and answers are JSON
objects (see docs/host.md)::

    {"id": 1, "op": "create", "cell_id": "c1", "source": "echo hi"}
    {"id": 2, "op": "observe", "cell_id": "c1", "generation": 0, "yield_time_ms": 500}
    {"id": 3, "op": "release", "cell_id": "c1", "generation": 0}
    {"id": 4, "op": "close", "cell_id": "c1"}

    {"id": 2, "ok": {"type": "completed", "cell_id": "c1", "content_items": [...], "error_text": null}}
    {"id": 3, "error": {"code": "UnknownCell", "message": "session 'core', cell 'c9', ...: ..."}}

An observe answer is the stored outcome exactly as ``Outcome.to_wire`` gives it;
a generation that failed answers (and replays) ``ObservationFailed`` with its
error text; a rule of the store that refuses a request answers with the rule's
name. The observe request, less its ``id``, is stored with the generation, so a
retry that differs (another ``yield_time_ms``) is ``GenerationConflict``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from ..errors import HostFenced, InvalidInput, StoreError
from ..observe import failure_text
from ..store import ObservationStore
from ..validation import is_encodable
from ..wire import Outcome
from .lines import MAX_DEPTH, MAX_LINE_BYTES, LongLine, TooDeep, bounded_lines, depth_exceeds, is_blank, parse
from .runtime import Runtime

__all__ = [
    "DEFAULT_YIELD_TIME_MS",
    "MAX_YIELD_TIME_MS",
    "OBSERVATION_FAILED",
    "RESTART_TEXT",
    "RUNTIME_FAILURE",
    "Host",
    "serve",
]

#: The error text of generations a previous host left pending (``fail_pending`` on start).
RESTART_TEXT = "host restarted: the observation was interrupted"
#: The error code of an observe whose generation failed (it replays as the same error).
OBSERVATION_FAILED = "ObservationFailed"
#: The error code of a runtime that raised outside an observe (for example, create).
RUNTIME_FAILURE = "RuntimeFailure"
DEFAULT_YIELD_TIME_MS = 10_000
MAX_YIELD_TIME_MS = 3_600_000

#: op -> (required fields, optional fields), besides ``id`` and ``op``.
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "create": (frozenset({"cell_id", "source"}), frozenset()),
    "observe": (frozenset({"cell_id", "generation"}), frozenset({"yield_time_ms", "terminate"})),
    "release": (frozenset({"cell_id", "generation"}), frozenset()),
    "close": (frozenset({"cell_id"}), frozenset()),
}


class _Refused(Exception):
    """An error answer that is not a store error: a failed generation, a runtime failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Host:
    """Answer one Core session's requests from a store and a runtime."""

    def __init__(
        self,
        store: ObservationStore,
        runtime: Runtime,
        session_id: str = "default",
        *,
        on_run: Callable[[str, int], None] | None = None,
    ) -> None:
        """Serve ``session_id``; ``on_run(cell_id, generation)`` is told before the runtime runs one."""
        self._store = store
        self._session = store.session(session_id)
        self._runtime = runtime
        self._on_run = on_run
        #: Set once the store's host id was taken over by another process: stop serving.
        self.fenced: HostFenced | None = None

    @property
    def session_id(self) -> str:
        """The Core session this host serves."""
        return self._session.session_id

    def start(self) -> int:
        """Fail what a previous host left pending (it replays as an error); return how many."""
        return self._store.fail_pending(RESTART_TEXT)

    def handle(self, message: object) -> dict[str, Any]:
        """Return the answer envelope of one request envelope; never raises for a bad request."""
        if depth_exceeds(message, MAX_DEPTH):
            # Refused before anything looks inside: nor is its ``id`` repeated.
            return _invalid(f"a request must not be nested deeper than {MAX_DEPTH} levels")
        request_id = message.get("id") if isinstance(message, Mapping) else None
        try:
            result = self._dispatch(message)
        except _Refused as refused:
            return {"id": request_id, "error": {"code": refused.code, "message": refused.message}}
        except StoreError as exc:
            if isinstance(exc, HostFenced):
                self.fenced = exc
            return {"id": request_id, "error": {"code": type(exc).__name__, "message": str(exc)}}
        except Exception as exc:  # a runtime's own failure must not stop the host
            return {"id": request_id, "error": {"code": RUNTIME_FAILURE, "message": failure_text(exc)}}
        return {"id": request_id, "ok": result}

    def handle_line(self, line: bytes | str | LongLine) -> str:
        """Return the JSON answer line (no newline) of one JSON request line; never raises.

        A line longer than ``MAX_LINE_BYTES`` (or the ``LongLine`` that stands
        for one), a line that is not strict JSON, and one nested deeper than
        ``MAX_DEPTH`` are answered ``InvalidInput`` with a null ``id``.
        """
        size = line.size if isinstance(line, LongLine) else _size(line)
        if size > MAX_LINE_BYTES:
            answer = _invalid(f"the request line is {size} bytes long; at most {MAX_LINE_BYTES}")
        else:
            assert not isinstance(line, LongLine)
            try:
                message = parse(line)
            except TooDeep as exc:
                answer = _invalid(str(exc))
            except ValueError as exc:
                answer = _invalid(f"not a JSON object: {exc}")
            else:
                answer = self.handle(message)
        try:
            return json.dumps(answer, separators=(",", ":"))
        except (ValueError, TypeError, RecursionError) as exc:  # an answer no JSON can carry
            return json.dumps(_invalid(f"the answer cannot be written as JSON: {type(exc).__name__}"))

    def _dispatch(self, message: object) -> Any:
        if not isinstance(message, Mapping):
            raise InvalidInput(f"a request must be a JSON object, not {type(message).__name__}")
        op = message.get("op")
        if not isinstance(op, str) or op not in _FIELDS:
            raise InvalidInput(f"unknown op {op!r}; one of {', '.join(_FIELDS)}")
        request = {key: value for key, value in message.items() if key != "id"}
        _check_fields(op, request)
        cell_id = request["cell_id"]
        if op == "create":
            return self._create(cell_id, request["source"])
        if op == "observe":
            return self._observe(cell_id, request)
        if op == "release":
            return {"released": self._session.release(cell_id, request["generation"])}
        return self._close(cell_id)

    def _create(self, cell_id: str, source: object) -> dict[str, Any]:
        # Checked as cell_id is, before anything is written: a source no
        # command can be given must not leave a registered cell behind.
        if not isinstance(source, str):
            raise InvalidInput(f"source must be a string, not {type(source).__name__}", cell_id=cell_id)
        if "\x00" in source:
            raise InvalidInput("source must not contain NUL", cell_id=cell_id)
        if not is_encodable(source):
            raise InvalidInput("source is not valid Unicode text (lone surrogate)", cell_id=cell_id)
        # The store first: a retried create is DuplicateCell and never starts a second process.
        self._session.create_cell(cell_id)
        self._runtime.create(cell_id, source)
        return {"cell_id": cell_id}

    def _observe(self, cell_id: str, request: dict[str, Any]) -> dict[str, Any]:
        generation = request["generation"]
        yield_time_ms = request.get("yield_time_ms", DEFAULT_YIELD_TIME_MS)
        terminate = request.get("terminate", False)
        if isinstance(yield_time_ms, bool) or not isinstance(yield_time_ms, int):
            raise InvalidInput("yield_time_ms must be an integer", cell_id=cell_id)
        if not 0 <= yield_time_ms <= MAX_YIELD_TIME_MS:
            raise InvalidInput(f"yield_time_ms must be within 0..{MAX_YIELD_TIME_MS}", cell_id=cell_id)
        if not isinstance(terminate, bool):
            raise InvalidInput("terminate must be true or false", cell_id=cell_id)

        def run() -> Outcome:
            if self._on_run is not None:
                self._on_run(cell_id, generation)
            if terminate:
                return self._runtime.terminate(cell_id)
            return self._runtime.observe(cell_id, yield_time_ms)

        observation = self._session.observe(cell_id, generation, run, request=request)
        if observation.outcome is None:
            raise _Refused(OBSERVATION_FAILED, observation.error_text or "")
        return observation.outcome.to_wire(cell_id)

    def _close(self, cell_id: str) -> dict[str, Any]:
        # The store first: an unknown cell is refused before anything is stopped.
        self._session.close_cell(cell_id)
        self._runtime.terminate(cell_id)
        return {"closed": cell_id}


def _check_fields(op: str, request: Mapping[str, Any]) -> None:
    required, optional = _FIELDS[op]
    keys = set(request) - {"op"}
    absent = required - keys
    if absent:
        raise InvalidInput(f"{op} lacks {', '.join(sorted(absent))}")
    unknown = keys - required - optional
    if unknown:
        raise InvalidInput(f"{op} has unknown fields {', '.join(sorted(repr(k) for k in unknown))}")


def _size(line: bytes | str) -> int:
    """Return the length in bytes of a request line, its newline not counted."""
    if isinstance(line, str):
        # A character is 1 to 4 bytes of UTF-8: encode only a line that may be too long.
        size = len(line) if len(line) * 4 <= MAX_LINE_BYTES else len(line.encode("utf-8", "surrogatepass"))
        return size - line.endswith("\n")
    return len(line) - line.endswith(b"\n")


def _invalid(message: str) -> dict[str, Any]:
    """Return the answer to a line that is not a request: ``InvalidInput``, with a null ``id``."""
    return {"id": None, "error": {"code": "InvalidInput", "message": message}}


def serve(host: Host, requests: IO[bytes] | Iterable[bytes], answers: IO[bytes]) -> int:
    """Answer JSON request lines with JSON answer lines until the input ends; return the count.

    Every line gets exactly one answer line, in order, except blank lines
    (nothing but spaces, tabs and carriage returns), which are skipped. A
    stream is read with a bound on the line length (``MAX_LINE_BYTES``). A
    ``HostFenced`` answer is the last: the host stops serving.
    """
    count = 0
    for line in bounded_lines(requests):
        if not isinstance(line, LongLine) and is_blank(line):
            continue
        answers.write(host.handle_line(line).encode("ascii") + b"\n")
        answers.flush()
        count += 1
        if host.fenced is not None:
            break  # another process holds the host id now: this one must stop
    return count
