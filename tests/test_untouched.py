"""Every rejected call leaves the tables exactly as they were, and names what it refused.

One world of cells in every state is built per test; each case runs one call that
the spec rejects and compares a dump of every table before and after. The
argument checks (identifiers, generations) are here too: they must refuse
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support.tables import dump

from codemode_store import ObservationStore, Outcome, StoreSession, TextItem
from codemode_store.errors import (
    AlreadyReleased,
    CellClosed,
    DuplicateCell,
    FutureGeneration,
    GenerationConflict,
    InvalidInput,
    NotPending,
    NotReleasable,
    ObservationInProgress,
    StoreError,
    UnknownCell,
)

#: Each test of ``store`` runs on the sync and the asyncio front end; the async one on SQLite
#: only, which keeps a PostgreSQL run short (there every test creates and drops a database).
pytestmark = pytest.mark.front_ends(async_backends=["sqlite"])

REQUEST = {"yield_time_ms": 1}
OTHER_REQUEST = {"yield_time_ms": 2}


def build_world(store: ObservationStore) -> None:
    """Create cells in every state the rules distinguish (session ``s``; ``t`` beside it)."""
    s = store.session("s")
    for cell in ("fresh", "run", "busy", "done", "gone", "failed", "shut", "lastyield", "miss"):
        s.create_cell(cell)
    # run: 0 yielded, 1 missing, 2 failed (all released by the next begin); 3 yielded, retained.
    s.begin("run", 0)
    s.record("run", 0, Outcome.yielded([TextItem("0")]))
    s.begin("run", 1)
    s.record("run", 1, Outcome.missing())
    s.begin("run", 2)
    s.fail("run", 2, "lost")
    s.begin("run", 3, REQUEST)
    s.record("run", 3, Outcome.yielded([TextItem("3")]))
    s.begin("busy", 0)
    s.begin("done", 0)
    s.record("done", 0, Outcome.yielded([]))
    s.begin("done", 1)
    s.record("done", 1, Outcome.completed([TextItem("done")]))
    s.begin("gone", 0)
    s.record("gone", 0, Outcome.terminated([]))
    s.release("gone", 0)
    s.begin("failed", 0, REQUEST)
    s.fail("failed", 0, "lost")
    s.begin("shut", 0)
    s.close_cell("shut")
    s.begin("lastyield", 0)
    s.record("lastyield", 0, Outcome.yielded([TextItem("tail")]))
    s.close_cell("lastyield")
    s.begin("miss", 0)
    s.record("miss", 0, Outcome.missing())
    t = store.session("t")
    t.create_cell("c")
    t.begin("c", 0)
    t.record("c", 0, Outcome.completed([]))


Call = Callable[[ObservationStore], Any]


def on(session_id: str, method: str, *args: Any) -> Call:
    """Return a call of ``store.session(session_id).method(*args)``."""
    return lambda store: getattr(store.session(session_id), method)(*args)


# (call, expected error, expected (session, cell, generation))
REJECTIONS: dict[str, tuple[Call, type[StoreError], tuple[str | None, str | None, int | None]]] = {
    "create_cell duplicate": (on("s", "create_cell", "run"), DuplicateCell, ("s", "run", None)),
    "begin unknown cell": (on("s", "begin", "nope", 0), UnknownCell, ("s", "nope", 0)),
    "begin unknown session": (on("u", "begin", "run", 4), UnknownCell, ("u", "run", 4)),
    "begin new cell at 1": (on("s", "begin", "fresh", 1), FutureGeneration, ("s", "fresh", 1)),
    "begin future": (on("s", "begin", "run", 5), FutureGeneration, ("s", "run", 5)),
    "begin largest generation": (
        on("s", "begin", "run", 2**63 - 1),
        FutureGeneration,
        ("s", "run", 2**63 - 1),
    ),
    "begin tombstone": (on("s", "begin", "run", 0), AlreadyReleased, ("s", "run", 0)),
    "begin failure tombstone": (on("s", "begin", "run", 2), AlreadyReleased, ("s", "run", 2)),
    "begin pending": (on("s", "begin", "busy", 0), ObservationInProgress, ("s", "busy", 0)),
    "begin after pending": (on("s", "begin", "busy", 1), ObservationInProgress, ("s", "busy", 1)),
    "begin closed": (on("s", "begin", "done", 2), CellClosed, ("s", "done", 2)),
    "begin closed with pending": (on("s", "begin", "shut", 1), CellClosed, ("s", "shut", 1)),
    "begin closed after yield": (on("s", "begin", "lastyield", 1), CellClosed, ("s", "lastyield", 1)),
    "begin conflicting request": (
        on("s", "begin", "run", 3, OTHER_REQUEST),
        GenerationConflict,
        ("s", "run", 3),
    ),
    "begin conflicting request on failed": (
        on("s", "begin", "failed", 0, OTHER_REQUEST),
        GenerationConflict,
        ("s", "failed", 0),
    ),
    "begin bad request": (on("s", "begin", "run", 4, {"x": float("nan")}), InvalidInput, ("s", "run", 4)),
    "record unknown cell": (on("s", "record", "nope", 0, Outcome.missing()), UnknownCell, ("s", "nope", 0)),
    "record closing on unknown cell": (
        on("s", "record", "nope", 0, Outcome.completed([])),
        UnknownCell,
        ("s", "nope", 0),
    ),
    "record different": (
        on("s", "record", "run", 3, Outcome.yielded([TextItem("other")])),
        GenerationConflict,
        ("s", "run", 3),
    ),
    "record different closing": (
        on("s", "record", "run", 3, Outcome.terminated([TextItem("3")])),
        GenerationConflict,
        ("s", "run", 3),
    ),
    "record tombstone": (on("s", "record", "run", 1, Outcome.missing()), NotPending, ("s", "run", 1)),
    "record absent": (on("s", "record", "run", 4, Outcome.missing()), NotPending, ("s", "run", 4)),
    "record failed": (on("s", "record", "failed", 0, Outcome.completed([])), NotPending, ("s", "failed", 0)),
    "record on closed cell's next": (
        on("s", "record", "done", 2, Outcome.completed([])),
        NotPending,
        ("s", "done", 2),
    ),
    "record wire for another cell": (
        on("s", "record", "busy", 0, {"type": "missing", "cell_id": "run"}),
        InvalidInput,
        ("s", "busy", 0),
    ),
    "record malformed wire": (
        on("s", "record", "busy", 0, {"type": "missing", "cell_id": "busy", "x": 1}),
        InvalidInput,
        ("s", "busy", 0),
    ),
    "record not an outcome": (on("s", "record", "busy", 0, 42), InvalidInput, ("s", "busy", 0)),
    "fail unknown cell": (on("s", "fail", "nope", 0, "e"), UnknownCell, ("s", "nope", 0)),
    "fail retained": (on("s", "fail", "run", 3, "e"), NotPending, ("s", "run", 3)),
    "fail failed": (on("s", "fail", "failed", 0, "e"), NotPending, ("s", "failed", 0)),
    "fail tombstone": (on("s", "fail", "gone", 0, "e"), NotPending, ("s", "gone", 0)),
    "fail absent": (on("s", "fail", "fresh", 0, "e"), NotPending, ("s", "fresh", 0)),
    "fail bad text": (on("s", "fail", "busy", 0, 7), InvalidInput, ("s", "busy", 0)),
    "release unknown cell": (on("s", "release", "nope", 0), UnknownCell, ("s", "nope", 0)),
    "release unknown session": (on("u", "release", "c", 0), UnknownCell, ("u", "c", 0)),
    "release future": (on("s", "release", "run", 4), FutureGeneration, ("s", "run", 4)),
    "release never begun": (on("s", "release", "fresh", 0), FutureGeneration, ("s", "fresh", 0)),
    "release pending": (on("s", "release", "busy", 0), NotReleasable, ("s", "busy", 0)),
    "release pending of closed": (on("s", "release", "shut", 0), NotReleasable, ("s", "shut", 0)),
    "release failed": (on("s", "release", "failed", 0), NotReleasable, ("s", "failed", 0)),
    "release yield of open cell": (on("s", "release", "run", 3), NotReleasable, ("s", "run", 3)),
    "release missing": (on("s", "release", "miss", 0), NotReleasable, ("s", "miss", 0)),
    "close_cell unknown": (on("s", "close_cell", "nope"), UnknownCell, ("s", "nope", None)),
    "get unknown": (on("s", "get", "nope", 0), UnknownCell, ("s", "nope", 0)),
    "history unknown": (on("s", "history", "nope"), UnknownCell, ("s", "nope", None)),
    "fail_pending bad text": (lambda store: store.fail_pending(None), InvalidInput, (None, None, None)),
}


@pytest.mark.parametrize("case", REJECTIONS.values(), ids=list(REJECTIONS))
def test_a_rejected_call_leaves_every_table_unchanged_and_names_its_key(
    store: ObservationStore, case: tuple[Call, type[StoreError], tuple[str | None, str | None, int | None]]
) -> None:
    call, error, (session_id, cell_id, generation) = case
    build_world(store)
    before = dump(store)

    with pytest.raises(error) as caught:
        call(store)

    assert dump(store) == before
    assert type(caught.value) is error
    assert (caught.value.session_id, caught.value.cell_id, caught.value.generation) == (
        session_id,
        cell_id,
        generation,
    )
    message = str(caught.value)
    for part in (session_id, cell_id):
        if part is not None:
            assert repr(part) in message
    if generation is not None:
        assert f"generation {generation}" in message


def test_the_world_holds_what_the_cases_assume(store: ObservationStore) -> None:
    build_world(store)
    s = store.session("s")
    assert [o.state for o in s.history("run")] == ["released", "released", "released", "retained"]
    closed = {x.cell_id for x in s.cells() if x.closed}
    assert closed == {"done", "gone", "shut", "lastyield"}


# -- arguments: identifiers ---------------------------------------------------------------

BAD_IDENTIFIERS = {
    "empty": "",
    "257 characters": "x" * 257,
    "NUL": "a\x00b",
    "lone surrogate": "a\ud800",
    "int": 7,
    "None": None,
    "bytes": b"cell",
    "bool": True,
}

CELL_OPERATIONS: dict[str, Callable[[StoreSession, Any], Any]] = {
    "create_cell": lambda s, cell: s.create_cell(cell),
    "begin": lambda s, cell: s.begin(cell, 0),
    "record": lambda s, cell: s.record(cell, 0, Outcome.missing()),
    "fail": lambda s, cell: s.fail(cell, 0, "e"),
    "release": lambda s, cell: s.release(cell, 0),
    "close_cell": lambda s, cell: s.close_cell(cell),
    "get": lambda s, cell: s.get(cell, 0),
    "history": lambda s, cell: s.history(cell),
}


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS.values(), ids=list(BAD_IDENTIFIERS))
@pytest.mark.parametrize("operation", CELL_OPERATIONS.values(), ids=list(CELL_OPERATIONS))
def test_a_bad_cell_id_is_invalid_input(
    store: ObservationStore, operation: Callable[[StoreSession, Any], Any], bad: Any
) -> None:
    build_world(store)
    before = dump(store)
    with pytest.raises(InvalidInput) as caught:
        operation(store.session("s"), bad)
    assert caught.value.session_id == "s"
    assert dump(store) == before


SESSION_OPERATIONS: dict[str, Callable[[ObservationStore, Any], Any]] = {
    "session": lambda store, session_id: store.session(session_id),
    "end_session": lambda store, session_id: store.end_session(session_id),
    "cells": lambda store, session_id: store.cells(session_id),
}


# store.cells(None) is the summary of every session, not a bad session id.
SESSION_CASES = {
    f"{op_name}-{bad_name}": (operation, bad)
    for op_name, operation in SESSION_OPERATIONS.items()
    for bad_name, bad in BAD_IDENTIFIERS.items()
    if not (op_name == "cells" and bad is None)
}


@pytest.mark.parametrize(("operation", "bad"), SESSION_CASES.values(), ids=list(SESSION_CASES))
def test_a_bad_session_id_is_invalid_input(
    store: ObservationStore, operation: Callable[[ObservationStore, Any], Any], bad: Any
) -> None:
    build_world(store)
    before = dump(store)
    with pytest.raises(InvalidInput):
        operation(store, bad)
    assert dump(store) == before


def test_identifiers_of_256_characters_are_accepted(store: ObservationStore) -> None:
    session_id, cell_id = "s" * 256, "é" * 255 + "✓"
    s = store.session(session_id)
    s.create_cell(cell_id)
    s.begin(cell_id, 0)
    s.record(cell_id, 0, {"type": "completed", "cell_id": cell_id, "content_items": [], "error_text": None})
    observation = s.get(cell_id, 0)
    assert observation is not None
    assert (observation.session_id, observation.cell_id) == (session_id, cell_id)
    assert [(x.session_id, x.cell_id) for x in store.cells()] == [(session_id, cell_id)]
    assert store.end_session(session_id) == 1


# -- arguments: generations ----------------------------------------------------------------

BAD_GENERATIONS = {
    "negative": -1,
    "2**63": 2**63,
    "huge": 2**64,
    "True": True,
    "False": False,
    "float": 1.0,
    "str": "0",
    "None": None,
}

GENERATION_OPERATIONS: dict[str, Callable[[StoreSession, Any], Any]] = {
    "begin": lambda s, g: s.begin("run", g),
    "record": lambda s, g: s.record("run", g, Outcome.missing()),
    "fail": lambda s, g: s.fail("run", g, "e"),
    "release": lambda s, g: s.release("run", g),
    "get": lambda s, g: s.get("run", g),
}


@pytest.mark.parametrize("bad", BAD_GENERATIONS.values(), ids=list(BAD_GENERATIONS))
@pytest.mark.parametrize("operation", GENERATION_OPERATIONS.values(), ids=list(GENERATION_OPERATIONS))
def test_a_bad_generation_is_invalid_input(
    store: ObservationStore, operation: Callable[[StoreSession, Any], Any], bad: Any
) -> None:
    build_world(store)
    before = dump(store)
    with pytest.raises(InvalidInput) as caught:
        operation(store.session("s"), bad)
    assert (caught.value.session_id, caught.value.cell_id) == ("s", "run")
    assert "'run'" in str(caught.value) and "'s'" in str(caught.value)
    assert dump(store) == before


# What the rules answer for 2**63-1 on ``run`` (last generation 3): never InvalidInput.
LARGEST_GENERATION_ANSWERS: dict[str, type[StoreError] | None] = {
    "begin": FutureGeneration,
    "record": NotPending,
    "fail": NotPending,
    "release": FutureGeneration,
    "get": None,
}


@pytest.mark.parametrize(
    ("operation", "expected"),
    [(GENERATION_OPERATIONS[name], answer) for name, answer in LARGEST_GENERATION_ANSWERS.items()],
    ids=list(LARGEST_GENERATION_ANSWERS),
)
def test_the_largest_generation_is_accepted_as_a_value(
    store: ObservationStore,
    operation: Callable[[StoreSession, Any], Any],
    expected: type[StoreError] | None,
) -> None:
    build_world(store)
    try:
        result = operation(store.session("s"), 2**63 - 1)
    except InvalidInput:
        pytest.fail("2**63-1 is a valid generation")
    except StoreError as exc:
        assert type(exc) is expected, exc
        assert exc.generation == 2**63 - 1
    else:
        assert expected is None and result is None
