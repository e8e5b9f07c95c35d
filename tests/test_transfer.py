"""Copy between stores, backup, and session export/import: every row as it was, rules intact.

Round trips go SQLite -> ``backend`` -> SQLite, so on PostgreSQL they cross
both ways; the rules of the protocol are then exercised on the copy.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest
from support.idle_stores import corrupt
from support.moving import of_sessions, populate, rows
from support.tables import dump

from codemode_store import ObservationStore, Outcome, TextItem
from codemode_store.errors import AlreadyReleased, CellClosed, InvalidInput
from codemode_store.transfer import (
    BadSessionFile,
    CopyState,
    PayloadMismatch,
    SessionConflict,
    UnknownSession,
    backup,
    copy_sessions,
    copy_to,
    export_session,
    import_session,
    tables,
)


@pytest.fixture
def source(tmp_path: Path) -> ObservationStore:
    """A SQLite store with sessions "s1" and "s2" holding rows of every kind."""
    store = ObservationStore.open(tmp_path / "source.db")
    populate(store, "s1")
    populate(store, "s2")
    yield store
    store.close()


def check_rules_hold(store: ObservationStore, original: ObservationStore) -> None:
    """Replay, AlreadyReleased, CellClosed, pending stays pending until fail_pending: on a copied store."""
    copied, was = store.session("s1"), original.session("s1")
    assert copied.begin("streaming", 1, {"yield_time_ms": 10000}) == was.get("streaming", 1)
    assert copied.begin("broken", 0) == was.get("broken", 0)
    with pytest.raises(AlreadyReleased):
        copied.begin("done", 1)
    with pytest.raises(AlreadyReleased):
        copied.begin("streaming", 0)
    with pytest.raises(CellClosed):
        copied.begin("stopped", 1)
    assert copied.release("done", 1) is False
    assert copied.release("stopped", 0) is True
    pending = [(o.session_id, o.cell_id, o.generation) for o in store.pending()]
    assert ("s1", "running", 0) in pending
    assert store.fail_pending() == len(pending)
    assert copied.get("running", 0).state == "failed"


def test_copy_round_trip_keeps_every_row_and_the_rules(
    source: ObservationStore, store_url: str, tmp_path: Path
) -> None:
    report = copy_to(source, store_url)
    assert report.copied == ("s1", "s2") and report.skipped == ()
    with ObservationStore.open(store_url) as middle:
        assert rows(middle) == rows(source)
        back = copy_to(middle, tmp_path / "back.db")
        assert back.rows == report.rows and back.payload_bytes == report.payload_bytes > 0
        with ObservationStore.open(tmp_path / "back.db") as end:
            assert dump(end) == dump(source)
        check_rules_hold(middle, source)


def test_a_target_at_an_older_revision_is_upgraded_then_filled(
    source: ObservationStore, tmp_path: Path
) -> None:
    from codemode_store.migrate import HEAD_REVISION, current_revision, downgrade

    with ObservationStore.open(tmp_path / "old.db") as old:
        downgrade(old.engine, "0002")
        assert current_revision(old.engine) == "0002"
    copy_to(source, tmp_path / "old.db")
    with ObservationStore.open(tmp_path / "old.db") as upgraded:
        assert current_revision(upgraded.engine) == HEAD_REVISION
        assert rows(upgraded) == rows(source)


def test_a_rerun_skips_identical_sessions_and_refuses_differing_ones(
    source: ObservationStore, store_url: str
) -> None:
    copy_to(source, store_url, ["s1"])
    again = copy_to(source, store_url)
    assert again.copied == ("s2",) and again.skipped == ("s1",)
    with ObservationStore.open(store_url) as target:
        target.session("s2").release("stopped", 0)
        source.session("s1").release("stopped", 0)
        before = rows(target)
        with pytest.raises(SessionConflict) as refused:
            copy_to(source, store_url)
        assert refused.value.sessions == ("s1", "s2")
        assert "'s1', 's2'" in str(refused.value)
        assert rows(target) == before


def test_only_the_sessions_named_are_copied(source: ObservationStore, tmp_path: Path) -> None:
    populate(source, "s3")
    report = copy_to(source, tmp_path / "target.db", ["s3", "s1"])
    assert report.copied == ("s3", "s1")
    with ObservationStore.open(tmp_path / "target.db") as target:
        assert rows(target) == of_sessions(rows(source), "s1", "s3")


def test_small_pages_and_chunks_still_copy_every_row(
    source: ObservationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = source.session("s1")
    for index in range(7):
        s.create_cell(f"many-{index}")
        for generation in range(3):
            s.begin(f"many-{index}", generation)
            s.record(f"many-{index}", generation, Outcome.yielded([TextItem(f"{index}/{generation} " * 50)]))
    monkeypatch.setattr(tables, "PAGE_ROWS", 3)
    monkeypatch.setattr(tables, "CHUNK_BYTES", 600)
    states: list[CopyState] = []
    copy_to(source, tmp_path / "target.db", progress=states.append)
    with ObservationStore.open(tmp_path / "target.db") as target:
        assert dump(target) == dump(source)
    last = states[-1]
    assert (last.sessions_done, last.rows_done, last.bytes_done) == (2, last.rows_total, last.bytes_total)
    assert len(states) > 10  # a state per small batch, not one per session


def test_the_copy_is_one_snapshot_while_a_host_writes(store: ObservationStore, tmp_path: Path) -> None:
    source = store  # on each backend
    populate(source, "s1")
    populate(source, "s2")
    before = rows(source)
    wrote = []

    def host_writes(state: CopyState) -> None:
        if state.sessions_done == 1 and not wrote:  # s1 is copied, s2 not yet
            source.session("s2").release("stopped", 0)
            source.session("s2").close_cell("streaming")
            populate(source, "s9")
            wrote.append(True)

    copy_to(source, tmp_path / "target.db", progress=host_writes)
    assert wrote
    with ObservationStore.open(tmp_path / "target.db") as target:
        assert rows(target) == before
    assert rows(source) != before


def test_a_payload_that_does_not_match_its_sha256_is_refused_on_arrival(
    source: ObservationStore, store_url: str
) -> None:
    corrupt(source, "streaming", 1, "payload = :v", b"tampered", session_id="s2")
    with pytest.raises(PayloadMismatch) as refused:
        copy_to(source, store_url)
    assert (refused.value.session_id, refused.value.cell_id, refused.value.generation) == (
        "s2",
        "streaming",
        1,
    )
    with ObservationStore.open(store_url) as target:
        copied = rows(target)
    assert copied == of_sessions(rows(source), "s1")  # s1 whole, nothing of s2


def test_the_source_itself_or_an_unknown_session_is_refused_before_the_target_is_made(
    source: ObservationStore, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="is the source store itself"):
        copy_to(source, tmp_path / "source.db")
    with pytest.raises(InvalidInput, match="is the source store itself"):
        copy_sessions(source, source)
    with pytest.raises(UnknownSession) as unknown:
        copy_to(source, tmp_path / "target.db", ["s1", "nope"])
    assert unknown.value.session_id == "nope"
    assert not (tmp_path / "target.db").exists()


@pytest.mark.postgres
def test_a_postgres_store_named_another_way_is_still_the_source(postgres_url: str) -> None:
    from sqlalchemy import make_url

    with ObservationStore.open(postgres_url) as store:
        populate(store, "s1")
        url = make_url(postgres_url)
        other_spelling = url.set(host="localhost" if url.host != "localhost" else "127.0.0.1")
        before = rows(store)
        with pytest.raises(InvalidInput, match="is the source store itself"):
            copy_to(store, other_spelling)
        assert rows(store) == before


@pytest.mark.postgres
def test_a_row_the_postgres_target_refuses_is_a_typed_error_and_its_session_is_not_written(
    source: ObservationStore, postgres_url: str
) -> None:
    from sqlalchemy import text

    from codemode_store.errors import DatabaseError

    with ObservationStore.open(postgres_url) as target:
        with target.engine.begin() as conn:  # a rule of the target's own that s2 breaks
            conn.execute(text("ALTER TABLE observations ADD CONSTRAINT only_s1 CHECK (session_id = 's1')"))
        with pytest.raises(DatabaseError, match=r"the target .*only_s1") as refused:
            copy_to(source, postgres_url)
        assert refused.value.session_id == "s2"
        assert rows(target) == of_sessions(rows(source), "s1")
        assert copy_to(source, postgres_url, ["s1"]).skipped == ("s1",)  # the target still works


@pytest.mark.postgres
def test_a_postgres_source_may_wait_on_the_target_longer_than_its_call_timeout(
    postgres_url: str, tmp_path: Path
) -> None:
    import time

    with ObservationStore.open(postgres_url, call_timeout=2) as source:
        populate(source, "s1")
        populate(source, "s2")
        waited = []

        def slow_target(state: CopyState) -> None:
            if state.sessions_done == 1 and not waited:
                time.sleep(3)  # the snapshot sits idle in its transaction past call_timeout
                waited.append(True)

        report = copy_to(source, tmp_path / "target.db", progress=slow_target)
        assert waited and report.copied == ("s1", "s2")
        with ObservationStore.open(tmp_path / "target.db") as target:
            assert rows(target) == rows(source)


# -- backup -----------------------------------------------------------------------------------------


def test_a_backup_of_a_sqlite_store_is_consistent_private_and_checked_while_a_host_writes(
    source: ObservationStore, tmp_path: Path
) -> None:
    stop = threading.Event()
    written: list[int] = []

    def host() -> None:
        with ObservationStore.open(source.url) as own:
            s = own.session("busy")
            s.create_cell("c")
            generation = 0
            while not stop.is_set():
                s.begin("c", generation)
                s.record("c", generation, Outcome.yielded([TextItem("x" * 5000)]))
                written.append(generation)
                generation += 1

    writer = threading.Thread(target=host)
    writer.start()
    try:
        while len(written) < 5:
            stop.wait(0.01)
        report = backup(source, tmp_path / "backup.db")
    finally:
        stop.set()
        writer.join()
    assert report.check.ok and report.method == "sqlite online backup"
    assert stat.S_IMODE(os.stat(tmp_path / "backup.db").st_mode) == 0o600
    with ObservationStore.open(tmp_path / "backup.db") as copy:
        copied = rows(copy)
        history = copy.session("busy").history("c")
    assert of_sessions(copied, "s1", "s2") == of_sessions(rows(source), "s1", "s2")
    # A state the source was in after some commit: every generation but the last
    # released (by its successor's begin), the last pending or retained.
    assert [o.generation for o in history] == list(range(len(history)))
    assert [o.state for o in history[:-1]] == ["released"] * (len(history) - 1)
    assert history[-1].state in ("pending", "retained")


@pytest.mark.postgres
def test_a_backup_of_a_postgres_store_is_a_checked_sqlite_copy(
    source: ObservationStore, postgres_url: str, tmp_path: Path
) -> None:
    copy_to(source, postgres_url)
    with ObservationStore.open(postgres_url) as store:
        report = backup(store, tmp_path / "backup.db")
    assert report.check.ok and report.method == "copy of every session"
    with ObservationStore.open(tmp_path / "backup.db") as copy:
        assert dump(copy) == dump(source)


def test_a_backup_refuses_an_existing_file_and_a_missing_folder(
    source: ObservationStore, tmp_path: Path
) -> None:
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    with pytest.raises(InvalidInput, match="exists already"):
        backup(source, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(InvalidInput, match="does not exist"):
        backup(source, tmp_path / "missing" / "backup.db")
    assert not (tmp_path / "missing").exists()


# -- export and import ------------------------------------------------------------------------------


def exported(store: ObservationStore, session_id: str = "s1") -> bytes:
    out = io.BytesIO()
    export_session(store, session_id, out)
    return out.getvalue()


def test_export_then_import_rebuilds_the_session_exactly(
    source: ObservationStore, store: ObservationStore
) -> None:
    data = exported(source)
    report = import_session(store, io.BytesIO(data))
    assert {table: count for table, count in report.counts.items() if count} == {
        "cells": 7,
        "observations": 8,
    }
    assert rows(store) == of_sessions(rows(source), "s1")
    check_rules_hold(store, source)
    with pytest.raises(SessionConflict):
        import_session(store, io.BytesIO(data))


def test_an_unknown_session_is_not_exported(source: ObservationStore) -> None:
    out = io.BytesIO()
    with pytest.raises(UnknownSession):
        export_session(source, "nope", out)
    assert out.getvalue() == b""


def _edits(data: bytes) -> dict[str, bytes]:
    header, body = data.split(b"\n", 1)
    lines = body.splitlines(keepends=True)
    return {
        "other version": header.replace(b'"format_version":1', b'"format_version":2') + b"\n" + body,
        "not a session file": b'{"hello": "world"}\n' + body,
        "empty": b"",
        "cut in the header": data[: len(header) // 2],
        "cut in a row": data[: len(header) + 1 + len(body) // 2],
        "cut at a line end": header + b"\n" + b"".join(lines[:-1]),
        "a byte flipped": data[:-20] + bytes([data[-20] ^ 1]) + data[-19:],
        "a row added": data + lines[-1],
        "counts changed": header.replace(b'"cells":7', b'"cells":6') + b"\n" + body,
    }


@pytest.mark.parametrize("edit", list(_edits(b"h" * 40 + b"\n" + b"b" * 40 + b"\n")))
def test_a_damaged_session_file_is_refused_and_nothing_is_written(
    source: ObservationStore, store: ObservationStore, edit: str
) -> None:
    before = rows(store)
    with pytest.raises(BadSessionFile):
        import_session(store, io.BytesIO(_edits(exported(source))[edit]))
    assert rows(store) == before


def test_a_row_that_fails_its_checks_is_named_by_line(source: ObservationStore, tmp_path: Path) -> None:
    import hashlib
    import json

    data = exported(source)
    header_line, body = data.split(b"\n", 1)
    lines = body.splitlines(keepends=True)
    entry = json.loads(lines[-1])
    entry["row"]["generation"] = "zero"
    lines[-1] = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    body = b"".join(lines)
    header = json.loads(header_line)
    header.update(body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    forged = json.dumps(header).encode() + b"\n" + body
    with ObservationStore.open(tmp_path / "target.db") as target:
        with pytest.raises(BadSessionFile, match=f"line {len(lines) + 1}: generation is a whole number"):
            import_session(target, io.BytesIO(forged))
        assert rows(target)["cells"] == []


# -- host ids (revision 0003) ------------------------------------------------------------------------


def test_host_ids_and_their_hosts_rows_come_along(tmp_path: Path, store_url: str) -> None:
    from codemode_store.hosts import RESTARTED_TEXT

    ObservationStore.open(tmp_path / "hosted.db", host_id="worker-2").close()  # a host that began nothing
    with ObservationStore.open(tmp_path / "hosted.db", host_id="worker-1", lease_seconds=3600) as hosted:
        populate(hosted, "h1")
        assert [h.host_id for h in hosted.hosts()] == ["worker-1", "worker-2"]
        data = exported(hosted, "h1")
        as_exported = rows(hosted)  # close() ends worker-1's lease: its hosts row changes
        copy_to(hosted, store_url)
        with ObservationStore.open(store_url) as copied:
            assert rows(copied) == rows(hosted)
            assert copied.session("h1").get("running", 0).host_id == "worker-1"
            assert copied.fail_pending() == 0  # worker-1's lease runs: its pending row is its own
    with ObservationStore.open(store_url, host_id="worker-1") as restarted:
        assert (restarted.incarnation, restarted.recovered) == (2, 1)
        assert restarted.session("h1").get("running", 0).error_text == RESTARTED_TEXT
    with ObservationStore.open(tmp_path / "imported.db") as target:
        import_session(target, io.BytesIO(data))
        assert rows(target)["hosts"] == [row for row in as_exported["hosts"] if row[0] == "worker-1"]
        assert of_sessions(rows(target), "h1") | {"hosts": []} == as_exported | {"hosts": []}
