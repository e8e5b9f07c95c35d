"""OpenTelemetry: a span and metrics for every operation, through the global providers.

As instrumented libraries do, the store emits whenever ``opentelemetry-api``
is importable (the ``otel`` extra): through the global tracer and meter
providers, which do nothing until the host installs an SDK
(``opentelemetry-sdk``) and may be installed after the store is opened.
``open(..., telemetry=False)`` turns it off. Whether a store emits is decided
once, when it is opened (:func:`instrument`): a store that does not emit
never imports ``opentelemetry`` and pays one ``is None`` test per call.

Each operation is one span named ``codemode_store.<operation>``
(``codemode_store.begin``, ``codemode_store.record``, ...; a maintenance
transaction is ``codemode_store.read`` or ``codemode_store.write``), of kind
CLIENT, with the attributes in ``ATTRIBUTE_*`` below and ``error.type`` (the
error's class) on a refusal. The metrics are the ``METRIC_*`` instruments.
Neither ever holds a payload's content: only its size.

The bytes a release drops are read by the store that emits, one primary-key
read of the generation's ``payload_bytes`` in the operation's own
transaction (on PostgreSQL's one-statement path, a read just before it): a
release or a ``begin`` that acknowledges its predecessor costs that read,
nothing else does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import URL

from . import operations as ops
from .calls import Call, Op
from .driver import Driver, Statement
from .errors import InvalidInput, StoreError
from .hosts import RESTARTED_PAYLOAD, Recovered, lost_text
from .observation import Observation
from .payload import PreparedPayload
from .schema import observations

__all__ = [
    "ATTRIBUTE_CELL",
    "ATTRIBUTE_DB_SYSTEM",
    "ATTRIBUTE_ERROR_TYPE",
    "ATTRIBUTE_GENERATION",
    "ATTRIBUTE_OPERATION",
    "ATTRIBUTE_OUTCOME_KIND",
    "ATTRIBUTE_PAYLOAD_BYTES",
    "ATTRIBUTE_RELEASED",
    "ATTRIBUTE_RELEASED_BYTES",
    "ATTRIBUTE_REPLAY",
    "ATTRIBUTE_ROWS",
    "ATTRIBUTE_SESSION",
    "INSTRUMENTATION_NAME",
    "METRIC_DURATION",
    "METRIC_RECORDED_BYTES",
    "METRIC_RECOVERED",
    "METRIC_REFUSALS",
    "METRIC_RELEASED_BYTES",
    "SPAN_PREFIX",
    "Telemetry",
    "check_telemetry",
    "instrument",
    "operation_name",
]

T = TypeVar("T")

#: The name of the tracer and the meter (the instrumentation scope).
INSTRUMENTATION_NAME = "codemode_store"
#: Every span's name is this followed by the operation's name.
SPAN_PREFIX = "codemode_store."

#: The operation (``begin``, ``record``, ...), by OpenTelemetry's database conventions.
ATTRIBUTE_OPERATION = "db.operation.name"
ATTRIBUTE_SESSION = "codemode_store.session_id"
ATTRIBUTE_CELL = "codemode_store.cell_id"
ATTRIBUTE_GENERATION = "codemode_store.generation"
ATTRIBUTE_OUTCOME_KIND = "codemode_store.outcome_kind"
#: The backend, by OpenTelemetry's database conventions: ``sqlite`` or ``postgresql``.
ATTRIBUTE_DB_SYSTEM = "db.system.name"
#: The error's class name on a refusal (OpenTelemetry's general convention).
ATTRIBUTE_ERROR_TYPE = "error.type"
ATTRIBUTE_PAYLOAD_BYTES = "codemode_store.payload_bytes"
ATTRIBUTE_RELEASED_BYTES = "codemode_store.released_bytes"
ATTRIBUTE_REPLAY = "codemode_store.replay"
ATTRIBUTE_RELEASED = "codemode_store.released"
ATTRIBUTE_ROWS = "codemode_store.rows"

METRIC_DURATION = "codemode_store.operation.duration"
METRIC_REFUSALS = "codemode_store.operation.refusals"
METRIC_RECORDED_BYTES = "codemode_store.payload.recorded"
METRIC_RELEASED_BYTES = "codemode_store.payload.released"
METRIC_RECOVERED = "codemode_store.recovery.failed"

#: The API's module globals that hold the providers a host set (None until then).
_GLOBALS = ("_TRACER_PROVIDER", "_METER_PROVIDER")

#: Functions that run an operation under another name than the operation's.
_RENAMED = {"_record_stored": "record", "_fail_stored": "fail", "renew": "renew_lease", "host_infos": "hosts"}

_o = observations.c
#: A generation's payload size while it still holds its payload (what releasing it drops).
_select_held_bytes = Statement(
    select(_o.payload_bytes).where(
        and_(
            _o.session_id == bindparam("p_session_id"),
            _o.cell_id == bindparam("p_cell_id"),
            _o.generation == bindparam("p_generation"),
            _o.payload.is_not(None),
        )
    ),
    "p_session_id",
    "p_cell_id",
    "p_generation",
)


def check_telemetry(enabled: object) -> None:
    """Raise ``InvalidInput`` unless the ``telemetry`` option of ``open`` is ``True`` or ``False``."""
    if not isinstance(enabled, bool):
        raise InvalidInput(f"telemetry must be True or False, not {enabled!r}")


def instrument(url: URL, enabled: object) -> Telemetry | None:
    """Return the telemetry of a store opened on ``url``, or ``None`` if it emits nothing.

    ``None`` when ``enabled`` is false or ``opentelemetry-api`` is not
    installed; then nothing of OpenTelemetry is imported.
    """
    check_telemetry(enabled)
    if not enabled:
        return None
    try:
        from opentelemetry import metrics, trace  # noqa: F401
    except ImportError:
        return None
    return Telemetry(url.get_backend_name())


def operation_name(call: Call[Any] | Op[Any]) -> str:
    """Return the name of the operation a prepared call runs (``begin``, ``read``, ...)."""
    if isinstance(call, Op):
        name: str = getattr(call.locked, "__name__", "operation")
        return _RENAMED.get(name, name)
    return "write" if call.writes else "read"


def _held_bytes(db: Driver, session: str, cell: str, generation: int) -> int:
    row = db.first(_select_held_bytes, (session, cell, generation))
    return 0 if row is None else int(row[0])


class _Measured:
    """Wrap ``release`` or ``begin`` so that it tells how many payload bytes it dropped.

    The size is read before the operation runs (the guard ``payload IS NOT
    NULL`` of its release), in the same transaction; it counts only if the
    operation then released: ``release`` returned ``True``, or ``begin(g)``
    started ``g`` (which releases ``g − 1``).
    """

    __slots__ = ("_at_once", "_locked", "released")

    def __init__(self, call: Op[Any]) -> None:
        self._locked = call.locked
        self._at_once = call.at_once
        self.released = 0

    def _previous(self, args: tuple[Any, ...]) -> tuple[str, str, int] | None:
        session, cell, generation = args[:3]
        if self._locked is ops.begin:
            return None if generation == 0 else (session, cell, generation - 1)
        return session, cell, generation

    def _done(self, result: Any) -> bool:
        return result is None if self._locked is ops.begin else result is True

    def _measure(self, operation: Callable[..., Any], db: Driver, now: int, args: tuple[Any, ...]) -> Any:
        key = self._previous(args)
        size = 0 if key is None else _held_bytes(db, *key)
        result = operation(db, now, *args)
        if size and self._done(result):
            self.released = size
        return result

    def locked(self, db: Driver, now: int, *args: Any) -> Any:
        return self._measure(self._locked, db, now, args)

    def at_once(self, db: Driver, now: int, *args: Any) -> Any:
        assert self._at_once is not None
        return self._measure(self._at_once, db, now, args)

    def op(self, call: Op[T]) -> Op[T]:
        """Return ``call`` with this measure's functions in place of its own."""
        at_once = None if self._at_once is None else self.at_once
        return Op(self.locked, at_once, call.writes, call.keyed, call.args)


class Telemetry:
    """The tracer and the instruments of one store; :meth:`run` wraps each of its calls."""

    def __init__(self, backend: str) -> None:
        """Get the tracer and the meter from the global providers (proxies until an SDK is set)."""
        from opentelemetry import context, metrics, trace

        from . import __version__

        self._context = context
        self._trace = trace
        self._metrics = metrics
        # Until the host installs an SDK the global providers are the API's
        # proxies, whose spans and instruments do nothing: a call then runs
        # bare. Once a provider is set it stays set (the API allows it once),
        # and every later call is traced. Whether one is set is read from the
        # API's module globals, two dictionary look-ups: the public getters
        # cost 2 µs a call (each looks up an unset environment variable, a
        # KeyError raised and caught), 4% of a SQLite write at durability=normal.
        # An API without those globals gets every call traced.
        from opentelemetry.metrics import _internal as metrics_globals

        trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER
        metrics.get_meter_provider()  # and OTEL_PYTHON_METER_PROVIDER
        self._globals = (vars(trace), vars(metrics_globals))
        present = (name in namespace for namespace, name in zip(self._globals, _GLOBALS, strict=True))
        self._live = not all(present)
        self._client = trace.SpanKind.CLIENT
        self._error = trace.Status(trace.StatusCode.ERROR)
        self.backend = backend
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__)
        self._duration = meter.create_histogram(
            METRIC_DURATION, unit="s", description="How long an operation took, refusals included"
        )
        self._refusals = meter.create_counter(
            METRIC_REFUSALS, unit="{refusal}", description="Operations refused, by error class"
        )
        self._recorded = meter.create_counter(
            METRIC_RECORDED_BYTES, unit="By", description="Payload bytes stored by record, fail and recovery"
        )
        self._released = meter.create_counter(
            METRIC_RELEASED_BYTES,
            unit="By",
            description="Payload bytes dropped by releases, explicit or implied by the next begin",
        )
        self._recovered = meter.create_counter(
            METRIC_RECOVERED,
            unit="{generation}",
            description="Pending generations that recovery (fail_pending) turned into failed",
        )
        # The metrics' attributes of each operation, built once.
        self._labels: dict[str, dict[str, str]] = {}

    def _prepare(
        self, call: Call[T] | Op[T]
    ) -> tuple[str, dict[str, str], Call[T] | Op[T], _Measured | None]:
        name = operation_name(call)
        labels = self._labels.get(name)
        if labels is None:
            labels = self._labels[name] = {ATTRIBUTE_OPERATION: name, ATTRIBUTE_DB_SYSTEM: self.backend}
        measured = None
        if isinstance(call, Op) and (call.locked is ops.release or call.locked is ops.begin):
            measured = _Measured(call)
            call = measured.op(call)
        return name, labels, call, measured

    def _start(self, name: str, labels: dict[str, str], call: Call[Any] | Op[Any]) -> tuple[Any, Any]:
        attributes: dict[str, Any] = dict(labels)
        attributes.update(_key_attributes(call))
        span = self._tracer.start_span(SPAN_PREFIX + name, kind=self._client, attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def _finish(
        self,
        span: Any,
        token: Any,
        started: float,
        labels: dict[str, str],
        call: Call[Any] | Op[Any],
        measured: _Measured | None,
        result: Any,
        error: BaseException | None,
    ) -> None:
        elapsed = time.perf_counter() - started
        if error is not None:
            error_type = type(error).__name__
            try:
                if span.is_recording():
                    span.set_attribute(ATTRIBUTE_ERROR_TYPE, error_type)
                    span.set_status(self._error)
            finally:
                span.end()
                self._context.detach(token)
            # The metrics once the span is no longer current: an SDK would
            # otherwise sample each measurement as an exemplar of the span,
            # which triples what a measurement costs.
            error_labels = {**labels, ATTRIBUTE_ERROR_TYPE: error_type}
            self._duration.record(elapsed, error_labels)
            if isinstance(error, StoreError):  # not an interruption (Ctrl-C, a cancelled task)
                self._refusals.add(1, error_labels)
            return
        facts = _facts(labels[ATTRIBUTE_OPERATION], call, measured, result)
        try:
            if span.is_recording():
                span.set_attributes(facts.attributes)
        finally:
            span.end()
            self._context.detach(token)
        self._duration.record(elapsed, labels)
        if facts.recorded:
            self._recorded.add(facts.recorded, labels)
        if facts.released:
            self._released.add(facts.released, labels)
        if facts.recovered:
            self._recovered.add(facts.recovered, labels)

    def live(self) -> bool:
        """Tell whether an SDK's provider is installed: whether spans and metrics go anywhere."""
        if self._live:
            return True
        tracing, metering = self._globals
        if tracing["_TRACER_PROVIDER"] is None and metering["_METER_PROVIDER"] is None:
            return False
        self._live = True
        return True

    def run(self, run: Callable[[Call[T] | Op[T]], T], call: Call[T] | Op[T]) -> T:
        """Run ``run(call)`` in the operation's span, and count it."""
        if not self._live and not self.live():
            return run(call)
        name, labels, call, measured = self._prepare(call)
        span, token = self._start(name, labels, call)
        started = time.perf_counter()
        try:
            result = run(call)
        except BaseException as exc:
            self._finish(span, token, started, labels, call, measured, None, exc)
            raise
        self._finish(span, token, started, labels, call, measured, result, None)
        return result

    async def run_async(self, run: Callable[[Call[T] | Op[T]], Awaitable[T]], call: Call[T] | Op[T]) -> T:
        """Await ``run(call)`` in the operation's span, and count it."""
        if not self._live and not self.live():
            return await run(call)
        name, labels, call, measured = self._prepare(call)
        span, token = self._start(name, labels, call)
        started = time.perf_counter()
        try:
            result = await run(call)
        except BaseException as exc:
            self._finish(span, token, started, labels, call, measured, None, exc)
            raise
        self._finish(span, token, started, labels, call, measured, result, None)
        return result


def _key_attributes(call: Call[Any] | Op[Any]) -> list[tuple[str, Any]]:
    """Return the session, cell and generation a call is about, as span attributes."""
    names = (ATTRIBUTE_SESSION, ATTRIBUTE_CELL, ATTRIBUTE_GENERATION)
    if isinstance(call, Op):
        values = call.args[: call.keyed]
        return [(name, value) for name, value in zip(names, values, strict=False) if value is not None]
    session = call.key.get("session_id")
    return [] if session is None else [(ATTRIBUTE_SESSION, session)]


class _Facts:
    """What a call that succeeded did, for the metrics and the span."""

    __slots__ = ("attributes", "recorded", "recovered", "released")

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}
        self.recorded = 0
        self.released = 0
        self.recovered = 0


def _recovery_bytes(result: Recovered, payload: PreparedPayload, host_id: str | None) -> int:
    """Return the bytes of the failure texts a ``fail_pending`` stored (each set has its own text)."""
    own = payload.size if host_id is None else RESTARTED_PAYLOAD.size
    lost = sum(count * len(lost_text(lost_id).encode("utf-8")) for lost_id, count in result.lost.items())
    return result.own * own + lost


def _facts(name: str, call: Call[Any] | Op[Any], measured: _Measured | None, result: Any) -> _Facts:
    facts = _Facts()
    if measured is not None:
        facts.released = measured.released
        facts.attributes[ATTRIBUTE_RELEASED_BYTES] = measured.released
    if not isinstance(call, Op):
        return facts
    extra = call.args[call.keyed :]
    payload = next((arg for arg in extra if isinstance(arg, PreparedPayload)), None)
    if name == "record":
        # ops.record takes the kind, record_observation the Outcome.
        kind = next((getattr(arg, "kind", arg) for arg in extra if not isinstance(arg, PreparedPayload)), "")
        if isinstance(kind, str) and kind:
            facts.attributes[ATTRIBUTE_OUTCOME_KIND] = kind
    if name in ("record", "fail") and payload is not None:
        facts.recorded = payload.size
        facts.attributes[ATTRIBUTE_PAYLOAD_BYTES] = payload.size
    elif name == "fail_pending" and isinstance(result, Recovered) and payload is not None:
        facts.recovered = result.total
        facts.recorded = _recovery_bytes(result, payload, call.args[call.keyed + 1])
        facts.attributes[ATTRIBUTE_ROWS] = result.total
    elif name == "claim" and isinstance(result, tuple):
        facts.recovered = result[1]  # (incarnation, generations of earlier incarnations failed)
        facts.recorded = result[1] * RESTARTED_PAYLOAD.size
        facts.attributes[ATTRIBUTE_ROWS] = result[1]
    elif name == "end_session" and isinstance(result, int):
        facts.attributes[ATTRIBUTE_ROWS] = result
    elif name == "release" and isinstance(result, bool):
        facts.attributes[ATTRIBUTE_RELEASED] = result
    elif name == "begin":
        facts.attributes[ATTRIBUTE_REPLAY] = result is not None
    if isinstance(result, Observation) and result.kind is not None:
        facts.attributes[ATTRIBUTE_OUTCOME_KIND] = result.kind
    return facts
