"""OpenTelemetry spans and metrics, and the operator's warnings on the ``codemode_store`` logger.

The SDK's in-memory span exporter and metric reader are installed as the
global providers for each test (and the globals reset afterwards, as
OpenTelemetry's own test utilities do): the store finds them as it would a
host's. Every test of ``store`` runs on both backends and both front ends.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_globals
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from sqlalchemy import make_url

from benchmarks.tcp_proxy import TcpProxy
from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    DatabaseUnavailable,
    FutureGeneration,
    HostFenced,
    InvalidInput,
)

pytestmark = pytest.mark.front_ends()

#: Text that must never reach a log record: it is only ever inside payloads.
SECRET = "payload-secret-7f3a"


def _reset_globals() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_globals._METER_PROVIDER_SET_ONCE = Once()
    metrics_globals._METER_PROVIDER = None
    metrics_globals._PROXY_METER_PROVIDER = metrics_globals._ProxyMeterProvider()


@dataclass
class Otel:
    """The spans and the metrics the store emitted."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """Return the data points of one metric, by their attributes: a sum's value, a histogram's count."""
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            key = frozenset((point.attributes or {}).items())
                            found[key] = getattr(point, "value", None) or getattr(point, "count", None)
        return found

    def total(self, name: str, **where: Any) -> Any:
        """Return the sum of a metric's points whose attributes include ``where``."""
        wanted = set(where.items())
        return sum(value for key, value in self.points(name).items() if wanted <= set(key))


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The SDK installed as the global tracer and meter providers, with in-memory exporters."""
    _reset_globals()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    try:
        yield Otel(spans, reader)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        _reset_globals()


def _host_loop(store: Any) -> tuple[int, int]:
    """Run one cell through the protocol; return the sizes of its two payloads."""
    s = store.session("s")
    s.create_cell("c")
    assert s.begin("c", 0) is None
    s.record("c", 0, Outcome.yielded([TextItem(SECRET)]))
    assert s.begin("c", 1) is None
    s.record("c", 1, Outcome.completed([TextItem(SECRET * 2)]))
    assert s.release("c", 1) is True
    first, second = s.history("c")
    return first.payload_bytes, second.payload_bytes


def test_a_span_per_operation_with_its_key(otel: Otel, store: Any, backend: str) -> None:
    first, second = _host_loop(store)
    with pytest.raises(AlreadyReleased):
        store.session("s").begin("c", 0)

    spans = otel.finished()
    assert [span.name for span in spans] == [
        "codemode_store.create_cell",
        "codemode_store.begin",
        "codemode_store.record",
        "codemode_store.begin",
        "codemode_store.record",
        "codemode_store.release",
        "codemode_store.history",
        "codemode_store.begin",
    ]
    system = "sqlite" if backend == "sqlite" else "postgresql"
    record = spans[4].attributes or {}
    assert record["db.system.name"] == system
    assert record["db.operation.name"] == "record"
    assert record["codemode_store.session_id"] == "s"
    assert record["codemode_store.cell_id"] == "c"
    assert record["codemode_store.generation"] == 1
    assert record["codemode_store.outcome_kind"] == "completed"
    assert record["codemode_store.payload_bytes"] == second
    assert all(span.kind is trace.SpanKind.CLIENT for span in spans)
    refused = spans[-1]
    assert (refused.attributes or {})["error.type"] == "AlreadyReleased"
    assert refused.status.status_code is trace.StatusCode.ERROR
    assert all("error.type" not in (span.attributes or {}) for span in spans[:-1])
    # Sizes, never content.
    assert all(SECRET not in repr(dict(span.attributes or {})) for span in spans)

    assert otel.total("codemode_store.operation.duration", **{"db.operation.name": "begin"}) == 3
    assert otel.total("codemode_store.operation.refusals", **{"error.type": "AlreadyReleased"}) == 1
    assert otel.total("codemode_store.payload.recorded") == first + second
    # begin 1 released generation 0; release 1 dropped generation 1.
    assert otel.total("codemode_store.payload.released", **{"db.operation.name": "begin"}) == first
    assert otel.total("codemode_store.payload.released", **{"db.operation.name": "release"}) == second


def test_a_repeated_release_and_a_replay_release_nothing(otel: Otel, store: Any) -> None:
    _host_loop(store)
    s = store.session("s")
    assert s.release("c", 1) is False
    s.create_cell("d")
    s.begin("d", 0)
    s.record("d", 0, Outcome.completed([TextItem("x")]))
    assert s.begin("d", 0) is not None  # a replay
    with pytest.raises(FutureGeneration):
        s.release("d", 5)
    released = otel.total("codemode_store.payload.released")
    store.session("s").history("c")
    first, second = (obs.payload_bytes for obs in s.history("c"))
    assert released == first + second
    replay = [span for span in otel.finished() if span.name == "codemode_store.begin"][-1]
    assert (replay.attributes or {})["codemode_store.replay"] is True
    assert (replay.attributes or {})["codemode_store.outcome_kind"] == "completed"


def test_recovery_is_counted_and_logged(otel: Otel, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="codemode_store")
    s = store.session("s")
    for cell in ("a", "b"):
        s.create_cell(cell)
        s.begin(cell, 0)
    assert store.fail_pending(f"host lost {SECRET}") == 2
    assert otel.total("codemode_store.recovery.failed") == 2
    warnings = [r for r in caplog.records if r.name == "codemode_store" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "recovery failed 2 pending generations" in warnings[0].getMessage()
    assert "2 begun without a host id" in warnings[0].getMessage()
    assert store.fail_pending() == 0
    assert len([r for r in caplog.records if r.name == "codemode_store"]) == 1
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "codemode_store" and r.levelno == logging.WARNING
    ]


def test_recovery_says_whose_generations_it_failed(
    otel: Otel, store_url: str, front_end: str, caplog: pytest.LogCaptureFixture
) -> None:
    from support.async_adapter import BlockingStore

    opener = BlockingStore if front_end == "async" else ObservationStore
    caplog.set_level(logging.DEBUG, logger="codemode_store")
    # Host "w" leaves one generation pending, then a new incarnation of it opens.
    first = opener.open(store_url, host_id="w")
    first.session("s").create_cell("c")
    first.session("s").begin("c", 0)
    with opener.open(store_url, host_id="w") as second:
        # The first process, fenced, is told so once, however often it tries.
        for _ in range(2):
            with pytest.raises(HostFenced):
                first.session("s").begin("c", 1)
        # Host "gone" leaves one pending and closes (its lease ends: lost at once).
        with opener.open(store_url, host_id="gone") as gone:
            gone.session("s").create_cell("g")
            gone.session("s").begin("g", 0)
        second.session("s").create_cell("mine")
        assert second.fail_pending(SECRET) == 1
    first.close()
    with opener.open(store_url) as anonymous:
        anonymous.session("t").create_cell("x")
        anonymous.session("t").begin("x", 0)
        assert anonymous.fail_pending(SECRET) == 1
    claimed, fenced, lost, own = _warnings(caplog)
    assert "recovery failed 1 pending generation on" in claimed
    assert "host 'w' (now incarnation 2) had left them pending" in claimed
    assert "host 'w' incarnation 1" in fenced and "fenced" in fenced and "must stop" in fenced
    assert "(1 of lost host 'gone')" in lost
    assert "(1 begun without a host id)" in own
    assert otel.total("codemode_store.recovery.failed") == 3
    assert otel.total("codemode_store.operation.refusals", **{"error.type": "HostFenced"}) == 2
    assert all(SECRET not in message for message in _warnings(caplog))


def test_a_fenced_host_is_told_by_its_lease_renewal(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="codemode_store")
    with (
        ObservationStore.open(store_url, host_id="w", lease_seconds=0.06) as first,
        ObservationStore.open(store_url, host_id="w"),
    ):
        deadline = time.monotonic() + 10
        while not _warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first store renews every 20 ms
        assert len(_warnings(caplog)) == 1
        assert "host 'w' incarnation 1" in _warnings(caplog)[0]
        assert first.incarnation == 1


def test_a_store_opened_before_the_sdk_emits_once_it_is_installed(store_url: str) -> None:
    _reset_globals()
    with ObservationStore.open(store_url) as store:
        telemetry = store._telemetry
        assert telemetry is not None and not telemetry.live()
        store.session("s").create_cell("before")
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        try:
            store.session("s").create_cell("after")
            assert telemetry.live()
            assert [span.name for span in spans.get_finished_spans()] == ["codemode_store.create_cell"]
            assert (spans.get_finished_spans()[0].attributes or {})["codemode_store.cell_id"] == "after"
        finally:
            provider.shutdown()
            _reset_globals()


def test_telemetry_false_emits_nothing(otel: Otel, store_url: str, front_end: str) -> None:
    from support.async_adapter import BlockingStore

    opener = BlockingStore if front_end == "async" else ObservationStore
    with opener.open(store_url, telemetry=False) as store:
        _host_loop(store)
    assert otel.finished() == []
    assert otel.points("codemode_store.operation.duration") == {}


@pytest.mark.parametrize("value", ["no", 0, None])
def test_the_telemetry_option_is_checked(value: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="telemetry must be True or False"):
        ObservationStore.open(tmp_path / "x.db", telemetry=value)  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()


_NOT_IMPORTED = """
import sys, tempfile, os
from importlib.abc import MetaPathFinder

class NoOpenTelemetry(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

from codemode_store import ObservationStore, Outcome, TextItem

def loop(store):
    s = store.session("s")
    s.create_cell("c")
    s.begin("c", 0)
    s.record("c", 0, Outcome.completed([TextItem("x")]))
    s.release("c", 0)
    store.fail_pending()

folder = tempfile.mkdtemp()
with ObservationStore.open(os.path.join(folder, "off.db"), telemetry=False) as store:
    loop(store)
    assert store._telemetry is None
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "telemetry=False imported it"
sys.meta_path.insert(0, NoOpenTelemetry())
with ObservationStore.open(os.path.join(folder, "absent.db")) as store:
    loop(store)
    assert store._telemetry is None
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported without the extra"
print("ok")
"""


def test_without_the_api_or_with_telemetry_off_nothing_is_imported() -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_NOT_IMPORTED)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_payload_text_never_logged(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="codemode_store")
    _host_loop(store)
    s = store.session("s")
    s.create_cell("f")
    s.begin("f", 0, {"why": SECRET})
    s.fail("f", 0, f"failed: {SECRET}")
    s.create_cell("p")
    s.begin("p", 0)
    store.fail_pending(SECRET)
    with pytest.raises(AlreadyReleased):
        s.begin("c", 0)
    logged = [r for r in caplog.records if r.name.startswith("codemode_store")]
    assert logged  # the recovery warning, at least
    for record in logged:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)


@pytest.mark.postgres
def test_an_outage_is_logged_when_it_starts_and_ends(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="codemode_store")
    target = make_url(postgres_url)
    proxy = TcpProxy(str(target.host), int(target.port or 5432)).start()
    port = proxy.port
    through = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        with ObservationStore.open(through, telemetry=False) as store:
            s = store.session("s")
            s.create_cell("c")
            proxy.stop()
            for _ in range(2):
                with pytest.raises(DatabaseUnavailable):
                    s.begin("c", 0, {"why": SECRET})
            proxy = TcpProxy(str(target.host), int(target.port or 5432), port=port).start()
            assert s.begin("c", 0) is None
            s.get("c", 0)
    finally:
        proxy.stop()
    logged = [r for r in caplog.records if r.name == "codemode_store"]
    assert [r.levelno for r in logged] == [logging.WARNING, logging.WARNING]
    down, up = (r.getMessage() for r in logged)
    assert "unavailable" in down and "session 's', cell 'c', generation 0" in down
    assert "available again" in up and "2 calls failed" in up
    assert target.password is None or str(target.password) not in down + up
    assert all(SECRET not in r.getMessage() for r in logged)
