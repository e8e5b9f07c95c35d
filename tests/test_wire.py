"""The wire shapes of docs/protocol.md: conversion both ways, and every malformed shape refused."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
from codemode_store.errors import InvalidInput

# -- strategies of valid wire objects ------------------------------------------------

identifiers = st.text(min_size=1, max_size=256).filter(lambda s: "\x00" not in s)
texts = st.text(max_size=40)
text_items = st.builds(lambda t: {"type": "input_text", "text": t}, texts)


def _image(url: str, detail: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "input_image", "image_url": url}
    if detail is not None:
        item["detail"] = detail
    return item


image_items = st.builds(
    _image,
    st.one_of(st.just("data:image/png;base64,iVBORw0KGgo="), texts),
    st.sampled_from([None, "auto", "low", "high", "original"]),
)
content = st.lists(st.one_of(text_items, image_items), max_size=4)


def _outcome(kind: str, cell_id: str, items: list[dict[str, Any]], error_text: str | None) -> dict[str, Any]:
    if kind == "missing":
        return {"type": "missing", "cell_id": cell_id}
    wire: dict[str, Any] = {"type": kind, "cell_id": cell_id, "content_items": items}
    if kind == "completed":
        wire["error_text"] = error_text
    return wire


wire_outcomes = st.builds(
    _outcome,
    st.sampled_from(["yielded", "completed", "terminated", "missing"]),
    identifiers,
    content,
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)


# -- round trips ----------------------------------------------------------------------


@given(wire_outcomes)
def test_from_wire_then_to_wire_gives_back_the_same_object(wire: dict[str, Any]) -> None:
    assert Outcome.from_wire(wire).to_wire(wire["cell_id"]) == wire


@given(wire_outcomes)
def test_to_wire_then_from_wire_gives_back_the_same_outcome(wire: dict[str, Any]) -> None:
    outcome = Outcome.from_wire(wire)
    assert Outcome.from_wire(outcome.to_wire("other-cell")) == outcome


_cell_numbers = itertools.count()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(wire=wire_outcomes)
def test_a_recorded_wire_outcome_is_read_back_equal(store: ObservationStore, wire: dict[str, Any]) -> None:
    # One store for every example: each example takes a cell of its own.
    session = store.session("wire")
    cell = f"cell-{next(_cell_numbers)}"
    session.create_cell(cell)
    session.begin(cell, 0)
    session.record(cell, 0, {**wire, "cell_id": cell})
    observation = session.get(cell, 0)
    assert observation is not None and observation.outcome is not None
    assert observation.outcome.to_wire(wire["cell_id"]) == wire


# -- the shape of to_wire -------------------------------------------------------------


def test_detail_key_is_left_out_when_there_is_none() -> None:
    wire = Outcome.yielded([ImageItem("data:image/png;base64,AA==")]).to_wire("c")
    assert wire["content_items"] == [{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]


def test_detail_key_is_present_when_given() -> None:
    wire = Outcome.yielded([ImageItem("u", "low")]).to_wire("c")
    assert wire["content_items"] == [{"type": "input_image", "image_url": "u", "detail": "low"}]


def test_completed_always_carries_error_text_null_when_empty() -> None:
    for outcome in (Outcome.completed([]), Outcome.completed([], error_text=""), Outcome.completed([], None)):
        wire = outcome.to_wire("c")
        assert "error_text" in wire
        assert wire["error_text"] is None
    assert Outcome.completed([], error_text="boom").to_wire("c")["error_text"] == "boom"


def test_empty_error_text_normalises_to_none() -> None:
    assert Outcome.completed([TextItem("x")], error_text="").error_text is None
    assert Outcome.completed([TextItem("x")], error_text="") == Outcome.completed([TextItem("x")])


@pytest.mark.parametrize("detail", ["auto", "low", "high", "original"])
def test_each_detail_value_round_trips(detail: str) -> None:
    item = {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": detail}
    wire = {"type": "yielded", "cell_id": "c", "content_items": [item]}
    outcome = Outcome.from_wire(wire)
    assert outcome.content_items == (ImageItem("data:image/png;base64,AA==", detail),)
    assert outcome.to_wire("c") == wire


def test_a_cell_id_of_256_characters_round_trips() -> None:
    wire = {"type": "missing", "cell_id": "é" * 255 + "✓"}
    assert Outcome.from_wire(wire).to_wire(wire["cell_id"]) == wire


def test_missing_has_only_type_and_cell_id() -> None:
    assert Outcome.missing().to_wire("c") == {"type": "missing", "cell_id": "c"}


@pytest.mark.parametrize("factory", [Outcome.yielded, Outcome.terminated])
def test_yielded_and_terminated_carry_no_error_text(factory: Any) -> None:
    wire = factory([TextItem("t")])
    assert wire.to_wire("c") == {
        "type": wire.kind,
        "cell_id": "c",
        "content_items": [{"type": "input_text", "text": "t"}],
    }


def test_completed_without_error_text_key_is_read_as_none() -> None:
    # Decision where the spec is silent: a sender that leaves the key out means "no error".
    outcome = Outcome.from_wire({"type": "completed", "cell_id": "c", "content_items": []})
    assert outcome == Outcome.completed([])


# -- malformed wire objects -----------------------------------------------------------

_TEXT = {"type": "input_text", "text": "t"}
_IMAGE = {"type": "input_image", "image_url": "u"}


def _yielded(*items: Any) -> dict[str, Any]:
    return {"type": "yielded", "cell_id": "c", "content_items": list(items)}


MALFORMED: dict[str, Any] = {
    "not an object (list)": [],
    "not an object (str)": "yielded",
    "not an object (None)": None,
    "unknown type": {"type": "done", "cell_id": "c", "content_items": []},
    "type null": {"type": None, "cell_id": "c", "content_items": []},
    "type bool": {"type": True, "cell_id": "c", "content_items": []},
    "type int": {"type": 1, "cell_id": "c", "content_items": []},
    "no type": {"cell_id": "c", "content_items": []},
    "no cell_id": {"type": "yielded", "content_items": []},
    "no content_items": {"type": "yielded", "cell_id": "c"},
    "unknown outcome key": {**_yielded(), "extra": 1},
    "error_text on yielded": {**_yielded(), "error_text": None},
    "error_text on terminated": {
        "type": "terminated",
        "cell_id": "c",
        "content_items": [],
        "error_text": "x",
    },
    "content_items on missing": {"type": "missing", "cell_id": "c", "content_items": []},
    "error_text on missing": {"type": "missing", "cell_id": "c", "error_text": None},
    "unknown completed key": {
        "type": "completed",
        "cell_id": "c",
        "content_items": [],
        "error_text": None,
        "detail": "low",
    },
    "content_items a string": {"type": "yielded", "cell_id": "c", "content_items": "abc"},
    "content_items an object": {"type": "yielded", "cell_id": "c", "content_items": _TEXT},
    "content_items null": {"type": "yielded", "cell_id": "c", "content_items": None},
    "content_items a tuple": {"type": "yielded", "cell_id": "c", "content_items": (_TEXT,)},
    "item a string": _yielded("text"),
    "item an int": _yielded(5),
    "item null": _yielded(None),
    "item unknown type": _yielded({"type": "output_text", "text": "t"}),
    "item without type": _yielded({"text": "t"}),
    "item type bool": _yielded({"type": True, "text": "t"}),
    "text item unknown key": _yielded({**_TEXT, "extra": 1}),
    "text item with detail": _yielded({**_TEXT, "detail": "low"}),
    "image item unknown key": _yielded({**_IMAGE, "text": "t"}),
    "text item without text": _yielded({"type": "input_text"}),
    "image item without url": _yielded({"type": "input_image", "detail": "low"}),
    "text an int": _yielded({"type": "input_text", "text": 5}),
    "text a bool": _yielded({"type": "input_text", "text": True}),
    "text null": _yielded({"type": "input_text", "text": None}),
    "text bytes": _yielded({"type": "input_text", "text": b"t"}),
    "text a list": _yielded({"type": "input_text", "text": ["t"]}),
    "text a lone surrogate": _yielded({"type": "input_text", "text": "a\ud800"}),
    "image_url an int": _yielded({"type": "input_image", "image_url": 1}),
    "image_url a bool": _yielded({"type": "input_image", "image_url": False}),
    "detail unknown": _yielded({**_IMAGE, "detail": "medium"}),
    "detail empty": _yielded({**_IMAGE, "detail": ""}),
    "detail an int": _yielded({**_IMAGE, "detail": 1}),
    "detail a bool": _yielded({**_IMAGE, "detail": True}),
    "error_text an int": {"type": "completed", "cell_id": "c", "content_items": [], "error_text": 1},
    "error_text a bool": {"type": "completed", "cell_id": "c", "content_items": [], "error_text": False},
    "error_text a list": {"type": "completed", "cell_id": "c", "content_items": [], "error_text": ["e"]},
    "cell_id an int": {"type": "missing", "cell_id": 7},
    "cell_id a bool": {"type": "missing", "cell_id": True},
    "cell_id null": {"type": "missing", "cell_id": None},
    "cell_id empty": {"type": "missing", "cell_id": ""},
    "cell_id with NUL": {"type": "missing", "cell_id": "a\x00b"},
    "cell_id too long": {"type": "missing", "cell_id": "c" * 257},
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_wire_is_invalid_input(wire: Any) -> None:
    with pytest.raises(InvalidInput):
        Outcome.from_wire(wire)


# -- malformed values built in Python --------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: TextItem(5),  # type: ignore[arg-type]
        lambda: TextItem("a\udc00"),
        lambda: ImageItem(None),  # type: ignore[arg-type]
        lambda: ImageItem("u", "medium"),
        lambda: Outcome.yielded("abc"),  # type: ignore[arg-type]
        lambda: Outcome.yielded(None),  # type: ignore[arg-type]
        lambda: Outcome.completed(5),  # type: ignore[arg-type]
        lambda: Outcome.terminated(None),  # type: ignore[arg-type]
        lambda: Outcome.missing().to_wire(5),  # type: ignore[arg-type]
        lambda: Outcome.yielded([]).to_wire(""),
        lambda: Outcome.completed([]).to_wire("c\x00"),
        lambda: Outcome.yielded([{"type": "input_text", "text": "t"}]),  # type: ignore[list-item]
        lambda: Outcome.completed([], error_text=5),  # type: ignore[arg-type]
        lambda: Outcome("done"),  # type: ignore[arg-type]
        lambda: Outcome("yielded", (), "error"),
        lambda: Outcome("missing", (TextItem("t"),)),
    ],
    ids=[
        "text not str",
        "text lone surrogate",
        "image_url not str",
        "detail unknown",
        "items a string",
        "yielded items None",
        "completed items an int",
        "terminated items None",
        "to_wire cell_id not str",
        "to_wire cell_id empty",
        "to_wire cell_id with NUL",
        "item a dict",
        "error_text not str",
        "unknown kind",
        "error_text on yielded",
        "items on missing",
    ],
)
def test_malformed_python_values_are_invalid_input(build: Any) -> None:
    with pytest.raises(InvalidInput):
        build()
