"""Integrity: the check of the database file and of every stored payload, and the ``check`` command."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from support.cli_runner import cli
from support.idle_stores import corrupt, fill, payload_bytes

from codemode_store import ObservationStore, Outcome, TextItem, integrity


def test_check_of_a_sound_store_rehashes_every_payload(store: ObservationStore, backend: str) -> None:
    fill(store, "s")
    fill(store, "t")

    report = store.check()

    assert report.ok
    assert report.corrupt == ()
    assert report.quick_check == (() if backend == "sqlite" else None)
    # retained "done" 1 and failed "broken" 0 in each session
    assert report.payloads == 4
    assert report.payload_bytes == payload_bytes(store, "s") + payload_bytes(store, "t")
    assert report.to_json()["quick_check"] == ("ok" if backend == "sqlite" else "not applicable")


def test_check_names_each_corrupt_payload_by_key(store: ObservationStore) -> None:
    fill(store, "s")
    stored = store.session("s").get("done", 1)
    assert stored is not None and stored.payload_bytes is not None
    flipped = b"X" * stored.payload_bytes  # same length, other bytes
    corrupt(store, "done", 1, "payload = :v", flipped)
    corrupt(store, "broken", 0, "payload_bytes = :v", 3)

    report = store.check()

    assert not report.ok
    found = {(row.session_id, row.cell_id, row.generation): row for row in report.corrupt}
    assert set(found) == {("s", "done", 1), ("s", "broken", 0)}
    assert "sha256" in found[("s", "done", 1)].reason
    assert "bytes" not in found[("s", "done", 1)].reason
    assert "the row says 3" in found[("s", "broken", 0)].reason
    assert found[("s", "broken", 0)].state == "failed"
    assert report.to_json()["corrupt"][0]["session_id"] == "s"


def test_check_detects_a_wrong_sha256_on_an_untouched_payload(store: ObservationStore) -> None:
    fill(store, "s")
    corrupt(store, "done", 1, "payload_sha256 = :v", hashlib.sha256(b"something else").digest())
    assert [(r.cell_id, r.generation) for r in store.check().corrupt] == [("done", 1)]


def test_check_pages_through_keys_and_chunks(
    store: ObservationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages and chunks, so that keys, pages and chunk boundaries cross sessions and cells.
    monkeypatch.setattr(integrity, "CHECK_PAGE_ROWS", 3)
    monkeypatch.setattr(integrity, "CHECK_CHUNK_BYTES", 1)
    for session_id in ("s", "s2", "t"):
        fill(store, session_id)
        for index in range(3):
            cell = f"extra{index}"
            store.session(session_id).create_cell(cell)
            store.session(session_id).begin(cell, 0)
            store.session(session_id).record(cell, 0, Outcome.completed([TextItem(f"{session_id} {index}")]))
    corrupt(store, "extra1", 0, "payload = :v", b"not json at all")
    seen: list[tuple[int, int]] = []

    report = store.check(progress=lambda done, total: seen.append((done, total)))

    assert report.payloads == 3 * 5
    assert [(r.session_id, r.cell_id) for r in report.corrupt] == [("s", "extra1")]
    assert len(seen) >= 5
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == report.payload_bytes


def test_check_reports_a_damaged_file_without_raising(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store.db"
    with ObservationStore.open(path) as store:
        s = store.session("s")
        for index in range(100):
            s.create_cell(f"c{index}")
            s.begin(f"c{index}", 0)
            s.record(f"c{index}", 0, Outcome.completed([TextItem("y" * 500)]))
        store.vacuum()
    with sqlite3.connect(path) as conn:
        leaves = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'observations' AND pagetype = 'leaf' ORDER BY pageno"
        ).fetchall()
    page_size = 4096
    with path.open("r+b") as file:
        # Garbage over the cell pointers of one leaf page of the observations table.
        file.seek((leaves[len(leaves) // 2][0] - 1) * page_size + 8)
        file.write(b"\xff" * 64)

    with ObservationStore.open(path) as store:
        report = store.check()

    assert not report.ok
    assert report.quick_check
    assert report.to_json()["ok"] is False


# -- command line -----------------------------------------------------------------------------


def test_cli_check_passes_a_sound_store(aged_url: str, backend: str) -> None:
    out = cli(["--db", aged_url, "check"]).stdout
    assert re.search(r"^payloads\s+4 payloads re-hashed \([\d,]+ bytes\), none corrupt$", out, re.MULTILINE)
    assert ("quick check  ok" in out) == (backend == "sqlite")
    report = json.loads(cli(["--db", aged_url, "check", "--json"]).stdout)
    assert report["ok"] is True
    assert report["corrupt"] == []


def test_cli_check_names_the_corrupt_row_and_exits_1(aged_url: str) -> None:
    with ObservationStore.open(aged_url) as store:
        corrupt(store, "done", 1, "payload = :v", b"tampered", session_id="new")

    result = cli(["--db", aged_url, "check"], 1)
    assert "session 'new', cell 'done', generation 1 (retained): the payload is 8 bytes" in result.stdout
    assert result.stderr.strip() == "error: the check found 1 problem"

    result = cli(["--db", aged_url, "check", "--json"], 1)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert [(r["session_id"], r["cell_id"], r["generation"]) for r in report["corrupt"]] == [
        ("new", "done", 1)
    ]
