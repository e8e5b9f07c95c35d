"""A catalogue of malformed input, through the API and the CLI: refused cleanly, nothing written.

Every API case must raise ``InvalidInput``; every CLI case must exit 2 (usage)
or 1 with one ``error:`` line, never with a traceback. After each, a dump of
every table equals the dump before. The argument checks of each operation
(every bad identifier and generation on every operation) are in
``test_untouched.py``; this catalogue covers the shapes of wire outcomes,
content items, requests, error texts, payload sizes, open options and the
command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.tables import dump

from cli import main
from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
from codemode_store.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 4_096  # max_payload_bytes of the store the size cases use


def world(store: ObservationStore) -> None:
    """Session ``s``: ``busy`` pending at 0, ``run`` with a retained yield at 0, ``done`` completed."""
    s = store.session("s")
    for cell in ("busy", "run", "done"):
        s.create_cell(cell)
    s.begin("busy", 0)
    s.begin("run", 0, {"yield_time_ms": 250})
    s.record("run", 0, Outcome.yielded([TextItem("partial")]))
    s.begin("done", 0)
    s.record("done", 0, Outcome.completed([TextItem("done")]))


def wire(**changes: Any) -> dict[str, Any]:
    """Return a valid completed wire outcome for cell ``busy``, with ``changes`` applied (None deletes)."""
    outcome: dict[str, Any] = {
        "type": "completed",
        "cell_id": "busy",
        "content_items": [{"type": "input_text", "text": "ok"}],
        "error_text": None,
    }
    for key, value in changes.items():
        if value is _DELETE:
            del outcome[key]
        else:
            outcome[key] = value
    return outcome


_DELETE = object()


def record(outcome: Any) -> Callable[[ObservationStore], Any]:
    """Return a call recording ``outcome`` (built lazily if callable) for the pending ``busy`` 0."""

    def call(store: ObservationStore) -> Any:
        value = outcome() if callable(outcome) else outcome
        return store.session("s").record("busy", 0, value)

    return call


def begin_with(request: Any) -> Callable[[ObservationStore], Any]:
    """Return a call of ``begin("run", 1, request)`` (the next generation of ``run``)."""
    return lambda store: store.session("s").begin("run", 1, request)


def limited(store: ObservationStore) -> ObservationStore:
    """Return a second store on the same engine with max_payload_bytes=LIMIT."""
    return ObservationStore(store.engine, max_payload_bytes=LIMIT)


def nested(depth: int) -> dict[str, Any]:
    """Return a mapping nested ``depth`` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


IMAGE = "data:image/png;base64,iVBORw0KGgo="

API_CASES: dict[str, Callable[[ObservationStore], Any]] = {
    # identifiers inside a wire outcome
    "wire cell_id empty": record(wire(cell_id="")),
    "wire cell_id not a string": record(wire(cell_id=7)),
    "wire cell_id with NUL": record(wire(cell_id="bu\x00sy")),
    "wire cell_id too long": record(wire(cell_id="b" * 257)),
    "wire cell_id lone surrogate": record(wire(cell_id="busy\udc80")),
    "wire cell_id missing": record(wire(cell_id=_DELETE)),
    # generations of other types than test_untouched's
    "generation NaN": lambda st: st.session("s").begin("busy", float("nan")),
    "generation Decimal": lambda st: st.session("s").release("done", Decimal(0)),
    "generation -2**63": lambda st: st.session("s").release("done", -(2**63)),
    "generation str on fail": lambda st: st.session("s").fail("busy", "0", "e"),
    # wire outcomes
    "type unknown": record(wire(type="finished")),
    "type not a string": record(wire(type=None)),
    "type missing": record(wire(type=_DELETE)),
    "extra key": record(wire(extra=1)),
    "missing with content_items": record({"type": "missing", "cell_id": "busy", "content_items": []}),
    "yielded with error_text": record(wire(type="yielded")),
    "completed without content_items": record(wire(content_items=_DELETE)),
    "content_items a dict": record(wire(content_items={"type": "input_text", "text": "x"})),
    "content_items a string": record(wire(content_items="text")),
    "content_items None": record(wire(content_items=None)),
    "item a string": record(wire(content_items=["hello"])),
    "item a list": record(wire(content_items=[["input_text", "x"]])),
    "item type unknown": record(wire(content_items=[{"type": "input_audio", "text": "x"}])),
    "item type missing": record(wire(content_items=[{"text": "x"}])),
    "text bytes": record(wire(content_items=[{"type": "input_text", "text": b"x"}])),
    "text None": record(wire(content_items=[{"type": "input_text", "text": None}])),
    "text lone surrogate": record(wire(content_items=[{"type": "input_text", "text": "\ud800"}])),
    "text item extra key": record(wire(content_items=[{"type": "input_text", "text": "x", "detail": "low"}])),
    "image detail invalid": record(
        wire(content_items=[{"type": "input_image", "image_url": IMAGE, "detail": "4k"}])
    ),
    "image detail not a string": record(
        wire(content_items=[{"type": "input_image", "image_url": IMAGE, "detail": 1}])
    ),
    "image_url None": record(wire(content_items=[{"type": "input_image", "image_url": None}])),
    "image_url missing": record(wire(content_items=[{"type": "input_image", "detail": "low"}])),
    "error_text not a string": record(wire(error_text=7)),
    "error_text lone surrogate": record(wire(error_text="boom\udfff")),
    "outcome a list": record([wire()]),
    "outcome a JSON string": record('{"type": "missing", "cell_id": "busy"}'),
    # Python values
    "Outcome with a dict item": record(lambda: Outcome.yielded([{"type": "input_text", "text": "x"}])),  # type: ignore[list-item]
    "TextItem of bytes": record(lambda: Outcome.yielded([TextItem(b"x")])),  # type: ignore[arg-type]
    "ImageItem detail invalid": record(lambda: Outcome.yielded([ImageItem(IMAGE, "max")])),
    "Outcome kind invalid": record(lambda: Outcome("exploded")),  # type: ignore[arg-type]
    "missing with items": record(lambda: Outcome("missing", (TextItem("x"),))),
    # payload sizes
    "record over max_payload_bytes": lambda st: (
        limited(st).session("s").record("busy", 0, Outcome.completed([TextItem("x" * LIMIT)]))
    ),
    "image over max_payload_bytes": lambda st: (
        limited(st)
        .session("s")
        .record("busy", 0, Outcome.yielded([ImageItem("data:image/png;base64," + "A" * LIMIT)]))
    ),
    "fail text over max_payload_bytes": lambda st: (
        limited(st).session("s").fail("busy", 0, "E" * (LIMIT + 1))
    ),
    "fail_pending text over max_payload_bytes": lambda st: limited(st).fail_pending("E" * (LIMIT + 1)),
    # requests that are not JSON
    "request a set": begin_with({1, 2}),
    "request a list": begin_with([("yield_time_ms", 1)]),
    "request NaN": begin_with({"yield_time_ms": float("nan")}),
    "request infinity": begin_with({"yield_time_ms": float("inf")}),
    "request int key": begin_with({1: 2}),
    "request tuple key": begin_with({("a", "b"): 2}),
    "request set value": begin_with({"a": {1}}),
    "request bytes value": begin_with({"a": b"x"}),
    "request object value": begin_with({"a": object()}),
    "request nested too deep": begin_with(nested(100)),
    "request lone surrogate": begin_with({"a": "\udc00"}),
    # error texts
    "fail text None": lambda st: st.session("s").fail("busy", 0, None),
    "fail text bytes": lambda st: st.session("s").fail("busy", 0, b"e"),
    "fail text lone surrogate": lambda st: st.session("s").fail("busy", 0, "e\ud800"),
    "fail_pending text int": lambda st: st.fail_pending(7),
    # opening
    "open busy_timeout negative": lambda st: ObservationStore.open(st.url, busy_timeout=-1),
    "open busy_timeout str": lambda st: ObservationStore.open(st.url, busy_timeout="5"),
    "open durability unknown": lambda st: ObservationStore.open(st.url, durability="paranoid"),
    "open max_payload_bytes float": lambda st: ObservationStore.open(st.url, max_payload_bytes=1.5),
    "open empty path": lambda st: ObservationStore.open(""),
    "open None": lambda st: ObservationStore.open(None),
    "open unknown URL scheme": lambda st: ObservationStore.open("nosuchdb://host/db"),
    "cells session int": lambda st: st.cells(7),
}


@pytest.mark.parametrize("call", API_CASES.values(), ids=list(API_CASES))
def test_the_api_refuses_malformed_input_and_writes_nothing(
    store: ObservationStore, call: Callable[[ObservationStore], Any]
) -> None:
    world(store)
    before = dump(store)
    with pytest.raises(InvalidInput):
        call(store)
    assert dump(store) == before
    # The store is still usable: the pending generation takes a good outcome.
    store.session("s").record("busy", 0, Outcome.completed([TextItem("ok")]))


# A wire cell_id that is malformed also differs from the cell recorded ("busy"): each of
# these cases must be refused for its cell_id itself, not only as an outcome for another cell.
WIRE_CELL_ID_CASES = [name for name in API_CASES if name.startswith("wire cell_id")]


@pytest.mark.parametrize("name", WIRE_CELL_ID_CASES)
def test_a_malformed_wire_cell_id_is_refused_for_itself(store: ObservationStore, name: str) -> None:
    world(store)
    before = dump(store)
    with pytest.raises(InvalidInput, match="cell_id") as caught:
        API_CASES[name](store)
    assert "for cell" not in str(caught.value)
    assert dump(store) == before


# -- the command line ---------------------------------------------------------------------------------------

LONG = "x" * 257

# (arguments after --db, expected exit status)
CLI_CASES: dict[str, tuple[list[str], int]] = {
    "show GEN x": (["show", "s", "run", "x"], 2),
    "show GEN -1": (["show", "s", "run", "-1"], 2),
    "show GEN 2**63": (["show", "s", "run", str(2**63)], 2),
    "show GEN 1.5": (["show", "s", "run", "1.5"], 2),
    "show extra argument": (["show", "s", "run", "0", "1"], 2),
    "release GEN x": (["release", "s", "done", "x"], 2),
    "release GEN -1": (["release", "s", "done", "-1"], 2),
    "release GEN 2**63": (["release", "s", "done", str(2**63)], 2),
    "release GEN empty": (["release", "s", "done", ""], 2),
    "release GEN hex": (["release", "s", "done", "0x0"], 2),
    "release GEN missing": (["release", "s", "done"], 2),
    "release unknown option": (["release", "--force", "s", "done", "0"], 2),
    "history --json with a value": (["history", "s", "run", "--json=yes"], 2),
    "unknown command": (["purge"], 2),
    "gc age x": (["gc", "--older-than", "x"], 2),
    "gc age negative": (["gc", "--older-than", "-1d"], 2),
    "gc age unit unknown": (["gc", "--older-than", "3y"], 2),
    "gc without age": (["gc"], 2),
    "history session empty": (["history", "", "run"], 1),
    "history session too long": (["history", LONG, "run"], 1),
    "history session NUL": (["history", "s\x00", "run"], 1),
    "history cell empty": (["history", "s", ""], 1),
    "show cell too long": (["show", "s", LONG], 1),
    "show cell lone surrogate": (["show", "s", "run\udcff"], 1),
    "release cell empty": (["release", "s", "", "0"], 1),
    "release session lone surrogate": (["release", "\udcff", "done", "0"], 1),
    "end-session empty": (["end-session", ""], 1),
    "end-session too long": (["end-session", LONG], 1),
    "cells --session empty": (["cells", "--session", ""], 1),
    "cells --session too long": (["cells", "--session", LONG], 1),
}


@pytest.mark.parametrize(("args", "code"), CLI_CASES.values(), ids=list(CLI_CASES))
def test_the_cli_refuses_malformed_arguments_and_writes_nothing(
    store_url: str, args: list[str], code: int
) -> None:
    with ObservationStore.open(store_url) as store:
        world(store)
        before = dump(store)
    result = CliRunner().invoke(main, ["--db", store_url, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and result.stdout == "", result.stderr
    if code == 1:
        assert "must" in lines[0] or "is " in lines[0], lines[0]
    else:  # a usage error points to the help to read
        assert lines[0].endswith(" --help)"), lines[0]
    with ObservationStore.open(store_url) as store:
        assert dump(store) == before


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([b"history", b"\xff", b"run"], id="session not UTF-8"),
        pytest.param([b"release", b"s", b"do\xedne", b"0"], id="cell not UTF-8"),
        pytest.param([b"release", b"s", b"done", b"\xff"], id="GEN not UTF-8"),
    ],
)
def test_arguments_that_are_not_utf8_are_refused_by_the_real_executable(
    tmp_path: Path, argv: list[bytes]
) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        world(store)
        before = dump(store)
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "--db", str(path), *argv],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode in (1, 2), done
    assert b"Traceback" not in done.stderr
    if done.returncode == 1:
        assert done.stderr.startswith(b"error: ") and done.stderr.count(b"\n") == 1, done.stderr
    assert b"\xff" not in done.stderr  # the raw byte is not echoed back to the terminal
    with ObservationStore.open(path) as store:
        assert dump(store) == before
