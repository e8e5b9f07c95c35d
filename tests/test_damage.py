"""Rows altered behind the store's back: every read raises DatabaseError, ``check`` reports them.

An operator's hand edit in the ``sqlite3`` shell can leave any storage class
where the store wrote another (SQLite keeps it), and can change a payload's
bytes so that they still decode. Reads must never hand out other bytes than
those recorded, never let a ``TypeError`` out, and ``check`` (and ``check
--json``) must list the row (issue 21, defects 1 and 2).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.idle_stores import corrupt, fill

from cli import main as cli_main
from codemode_store import DatabaseError, ObservationStore, Outcome, StoreError, TextItem
from codemode_store.cli_support.inspection import iter_sessions

pytestmark = pytest.mark.front_ends()


def test_a_payload_altered_so_that_it_still_decodes_is_never_handed_out(
    store: ObservationStore, backend: str, store_url: str
) -> None:
    s = store.session("s")
    s.create_cell("c")
    s.begin("c", 0, {"yield_time_ms": 10})
    s.record("c", 0, Outcome.yielded([TextItem("evil")]))
    s.create_cell("f")
    s.begin("f", 0)
    s.fail("f", 0, "evil failure")
    for cell in ("c", "f"):
        stored = s.get(cell, 0)
        assert stored is not None and stored.payload_bytes is not None
        # The operator's edit: same length, still valid JSON (or text), other bytes.
        replace = "replace(payload, 'evil', 'EVIL')" if backend == "sqlite" else None
        if replace is None:
            corrupt(store, cell, 0, "payload = :v", _payload(store, cell).replace(b"evil", b"EVIL"))
        else:
            corrupt(store, cell, 0, f"payload = CAST({replace} AS BLOB)", None)

    reads: list[Callable[[], object]] = [
        lambda: s.get("c", 0),
        lambda: s.begin("c", 0),
        lambda: s.begin("c", 0, {"yield_time_ms": 10}),
        lambda: s.history("c"),
        lambda: s.observe("c", 0, lambda: pytest.fail("a replay runs nothing")),
        lambda: s.get("f", 0),
        lambda: s.history("f"),
    ]
    for read in reads:
        with pytest.raises(DatabaseError, match=r"sha256 differs.*codemode-store check"):
            read()

    with ObservationStore.open(store_url) as checking:
        report = checking.check()
    assert sorted((row.cell_id, row.reason) for row in report.corrupt) == [
        ("c", "its sha256 differs from the one recorded"),
        ("f", "its sha256 differs from the one recorded"),
    ]


def _payload(store: ObservationStore, cell_id: str) -> bytes:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        query = text("SELECT payload FROM observations WHERE session_id = 's' AND cell_id = :c")
        return bytes(conn.execute(query, {"c": cell_id}).scalar_one())


#: Hand edits of an SQLite file, each leaving a value of a class the store never writes
#: (run with CHECK constraints off): the SQL, the generation of cell "done" (or of
#: "broken", for the failure) a read names, and the reads that must raise.
OBSERVATION_READS = {"get", "begin replay", "history"}
HAND_EDITS: dict[str, tuple[str, int, set[str]]] = {
    "payload TEXT": (
        "UPDATE observations SET payload = CAST(payload AS TEXT) WHERE cell_id = 'done'",
        1,
        OBSERVATION_READS,
    ),
    "payload INTEGER": (
        "UPDATE observations SET payload = 7 WHERE cell_id = 'done' AND generation = 1",
        1,
        OBSERVATION_READS,
    ),
    "payload REAL": (
        "UPDATE observations SET payload = 7.5 WHERE cell_id = 'done' AND generation = 1",
        1,
        OBSERVATION_READS,
    ),
    "payload NULL": (
        "UPDATE observations SET payload = NULL WHERE cell_id = 'done' AND generation = 1",
        1,
        OBSERVATION_READS,
    ),
    "failure TEXT": (
        "UPDATE observations SET payload = CAST(payload AS TEXT) WHERE cell_id = 'broken'",
        0,
        OBSERVATION_READS,
    ),
    "sha256 TEXT": (
        "UPDATE observations SET payload_sha256 = 'abc' WHERE cell_id = 'done'",
        1,
        OBSERVATION_READS,
    ),
    "sha256 INTEGER": (
        "UPDATE observations SET payload_sha256 = 32 WHERE cell_id = 'done'",
        1,
        OBSERVATION_READS,
    ),
    "size TEXT": (
        "UPDATE observations SET payload_bytes = 'many' WHERE cell_id = 'done'",
        1,
        {*OBSERVATION_READS, "cells"},
    ),
    "size REAL": (
        "UPDATE observations SET payload_bytes = 0.5 WHERE cell_id = 'done'",
        1,
        {*OBSERVATION_READS, "cells"},
    ),
    "recorded_at TEXT": (
        "UPDATE observations SET recorded_at = 'today' WHERE cell_id = 'done'",
        1,
        {*OBSERVATION_READS, "cells"},
    ),
    "released_at REAL": (
        "UPDATE observations SET released_at = 1.5 WHERE cell_id = 'done'",
        1,
        {*OBSERVATION_READS, "cells"},
    ),
    "generation REAL": (
        "UPDATE observations SET generation = 1.5 WHERE cell_id = 'done' AND generation = 1",
        1,
        {"begin replay", "history"},
    ),
    "state unknown": (
        "UPDATE observations SET state = 'gone' WHERE cell_id = 'done' AND generation = 1",
        1,
        OBSERVATION_READS,
    ),
    "kind unknown": (
        "UPDATE observations SET kind = 'strange' WHERE cell_id = 'done' AND generation = 1",
        1,
        OBSERVATION_READS,
    ),
    "request BLOB": (
        "UPDATE observations SET request = X'7b7d' WHERE cell_id = 'done' AND generation = 1",
        1,
        {"begin replay"},
    ),
    "last_generation TEXT": (
        "UPDATE cells SET last_generation = 'one' WHERE cell_id = 'done'",
        1,
        {"begin replay", "begin next", "cells"},
    ),
    "closed TEXT": ("UPDATE cells SET closed = 'yes' WHERE cell_id = 'done'", 1, {"begin next", "cells"}),
    "created_at TEXT": (
        "UPDATE cells SET created_at = 'monday' WHERE cell_id = 'done'",
        1,
        {"cells", "sessions"},
    ),
}


@pytest.mark.parametrize("edit", sorted(HAND_EDITS))
def test_a_hand_edit_of_any_column_is_a_database_error_and_check_lists_it(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill(store, "s")
    sql, generation, must_raise = HAND_EDITS[edit]
    cell = "broken" if edit.startswith("failure") else "done"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA ignore_check_constraints = 1")
    with conn:
        conn.execute(sql)
    conn.close()

    with ObservationStore.open(path) as store:
        report = store.check()
    assert not report.ok and (report.corrupt or report.damaged)
    checked = CliRunner().invoke(cli_main, ["--db", str(path), "check", "--json"])
    assert checked.exit_code == 1
    assert json.loads(checked.stdout)["ok"] is False
    for command in (["show", "s", cell, str(generation)], ["history", "s", cell], ["cells"], ["sessions"]):
        result = CliRunner().invoke(cli_main, ["--db", str(path), *command])
        assert result.exit_code in (0, 1) and not isinstance(result.exception, Exception), result.exception
        assert "unexpected" not in result.stderr, (command, result.stderr)

    with ObservationStore.open(path) as store:
        s = store.session("s")
        reads: dict[str, Callable[[], object]] = {
            "get": lambda: s.get(cell, generation),
            "begin replay": lambda: s.begin(cell, generation, {"yield_time_ms": 10}),
            "history": lambda: s.history(cell),
            "cells": lambda: s.cells(),
            "sessions": lambda: list(iter_sessions(store)),
            # Last: it releases the generation before it (without reading its payload).
            "begin next": lambda: s.begin(cell, generation + 1),
        }
        raised = set()
        for name, read in reads.items():
            try:
                read()
            except DatabaseError as exc:
                assert "altered or damaged (`codemode-store check` lists such rows)" in str(exc)
                raised.add(name)
            except StoreError:
                pass  # a rule's answer (CellClosed, ...): nothing of the damaged row handed out
        assert must_raise <= raised, f"{edit}: {sorted(must_raise - raised)} did not raise"


def test_a_forged_row_whose_hash_matches_but_does_not_decode_is_a_database_error(tmp_path: Path) -> None:
    # Someone who rewrites the hash too (docs/security.md): reads still never let a decoder's error out.
    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        fill(store, "s")
    forged = b'{"type": "completed", "content_items": 5}'
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE observations SET payload = ?, payload_bytes = ?, payload_sha256 = ? "
            "WHERE cell_id = 'done' AND generation = 1",
            (forged, len(forged), hashlib.sha256(forged).digest()),
        )
    conn.close()
    with ObservationStore.open(path) as store, pytest.raises(DatabaseError, match=r"not decode \(Type"):
        store.session("s").get("done", 1)
