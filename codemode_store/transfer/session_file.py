"""One session as a file: JSON lines with a versioned header, and the strict way back in.

The first line is the header, a JSON object::

    {"format": "codemode-store-session", "format_version": 1, "schema_revision": "0002",
     "session_id": "thread-1", "counts": {"cells": 2, "observations": 5},
     "body_bytes": 1234, "body_sha256": "<hex>"}

Each further line (the body) is one row, ``{"table": NAME, "row": {COLUMN: VALUE}}``,
every column of the table, binary values (payloads, their sha256) as base64
text; store-wide rows the session's rows refer to come first, then the
session's tables in the schema's order, each in key order. ``counts`` counts
the body's lines per table, ``body_sha256`` hashes the body's bytes exactly.

:func:`import_session` checks the header, then every row as it reads it
(columns, types, the session, each payload against its size and sha256), and
writes everything in one transaction that commits only when the body ends where
the header says, with that hash: a file of another format or version, a
truncated or edited one, gives one ``BadSessionFile`` and writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Connection, Table, insert

from ..jsonable import json_object
from ..migrate import HEAD_REVISION, history
from ..store import ObservationStore
from ..validation import check_identifier
from . import tables
from .copying import held_sessions, shown
from .errors import BadSessionFile, PayloadMismatch, SessionConflict, UnknownSession
from .rows import RowError, check_payload, decode_row, encode_row
from .snapshot import naming, snapshot

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SessionFileReport",
    "check_session_file",
    "export_session",
    "import_session",
]

FORMAT = "codemode-store-session"
FORMAT_VERSION = 1
#: A header line longer than this is not a header.
_HEADER_LIMIT = 64 * 1024
#: Rows inserted per statement on import (fewer when their payloads are large).
_BATCH_ROWS = 1000
_BATCH_BYTES = 8 * 1024 * 1024
_HEADER_KEYS = (
    "format",
    "format_version",
    "schema_revision",
    "session_id",
    "counts",
    "body_bytes",
    "body_sha256",
)


@dataclass(frozen=True, slots=True)
class SessionFileReport:
    """What an export wrote or an import read: the session, rows per table, payload bytes."""

    session_id: str
    counts: dict[str, int]
    payload_bytes: int

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return json_object(self, ("session_id", "counts", "payload_bytes"))


def _line(table: str, row: dict[str, Any]) -> bytes:
    return json.dumps({"table": table, "row": encode_row(row)}, separators=(",", ":")).encode() + b"\n"


def export_session(source: ObservationStore, session_id: str, out: IO[bytes]) -> SessionFileReport:
    """Write one session, payloads included, to ``out`` as a session file (see the module's text).

    The rows come from one snapshot of the store; the body is spooled to a
    temporary file first, since the header carries its hash.
    """
    check_identifier(session_id, "session_id")
    counts = {name: 0 for name in tables.table_names()}
    size = 0
    body_hash = hashlib.sha256()
    where = f"the source {shown(source.url)}"
    with tempfile.TemporaryFile() as body, snapshot(source.engine, shown(source.url)) as reader:
        with naming(where):
            if not held_sessions(reader, [session_id]):
                raise UnknownSession("the store holds no such session", session_id=session_id)
            for shared in tables.shared_tables():
                for row in shared.rows(reader, shared.referenced(reader, session_id)):
                    counts[shared.name] += 1
                    _write(body, body_hash, _line(shared.name, row))
            for spec in tables.session_tables():
                for batch in spec.rows(reader, session_id):
                    size += _write_rows(body, body_hash, spec.name, batch)
                    counts[spec.name] += len(batch)
                    del batch  # before the next batch is fetched
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_revision": HEAD_REVISION,
            "session_id": session_id,
            "counts": counts,
            "body_bytes": body.tell(),
            "body_sha256": body_hash.hexdigest(),
        }
        out.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
        body.seek(0)
        while chunk := body.read(1024 * 1024):
            out.write(chunk)
    out.flush()
    return SessionFileReport(session_id, counts, size)


def _write_rows(body: IO[bytes], digest: Any, table: str, rows: list[dict[str, Any]]) -> int:
    """Write rows of ``table`` as body lines, each payload checked; return their payload bytes."""
    size = 0
    for row in rows:
        size += check_payload(row)
        _write(body, digest, _line(table, row))
    return size


def _write(body: IO[bytes], digest: Any, line: bytes) -> None:
    body.write(line)
    digest.update(line)


def import_session(target: ObservationStore, file: IO[bytes], *, name: str = "the file") -> SessionFileReport:
    """Rebuild the session of a session file in ``target``, exactly; ``BadSessionFile`` or nothing written.

    ``SessionConflict`` if the target holds the session already. ``name`` is
    how errors name the file.
    """
    with contextlib.ExitStack() as stack:
        if not file.seekable():
            spooled = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(file, spooled, 1024 * 1024)
            spooled.seek(0)
            file = spooled
        header = _header(file, name)
        body_start = file.tell()
        # The whole body's length and hash first: a truncated or edited file is
        # named as such, before any of its rows meets the database's checks.
        _check_body(file, header, name)
        file.seek(body_start)
        with naming(f"the target {shown(target.url)}"):
            return target.write(
                lambda conn: _Importer(conn, header, name).run(file), session_id=header["session_id"]
            )


def check_session_file(file: IO[bytes], name: str = "the file") -> dict[str, Any]:
    """Check a session file's header, length and sha256 without a store; return its header.

    ``file`` must be seekable; it is left at its start. ``BadSessionFile`` if
    the file is of another format or version, truncated or edited.
    """
    start = file.tell()
    header = _header(file, name)
    _check_body(file, header, name)
    file.seek(start)
    return header


def _check_body(file: IO[bytes], header: dict[str, Any], name: str) -> None:
    digest = hashlib.sha256()
    read = 0
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
        read += len(chunk)
    if read < header["body_bytes"]:
        raise BadSessionFile(
            f"{name} is truncated: its body is {read} bytes, its header says {header['body_bytes']}"
        )
    if read > header["body_bytes"]:
        raise BadSessionFile(
            f"{name} goes on past the end its header gives ({read} bytes, not {header['body_bytes']})"
        )
    if digest.hexdigest() != header["body_sha256"]:
        raise BadSessionFile(
            f"{name} was changed after it was written: its body's sha256 differs from its header's"
        )


def _header(file: IO[bytes], name: str) -> dict[str, Any]:
    line = file.readline(_HEADER_LIMIT + 1)
    if not line:
        raise BadSessionFile(f"{name} is empty, not a {FORMAT} file")
    if not line.endswith(b"\n") and line.startswith(b'{"format":"' + FORMAT.encode()):
        raise BadSessionFile(f"{name} is truncated: it ends inside its header line")
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadSessionFile(f"{name} is not a {FORMAT} file (its first line is not its header)")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise BadSessionFile(
            f"{name} is of format version {version!r}; "
            f"this version of codemode_store reads version {FORMAT_VERSION}"
        )
    if sorted(header) != sorted(_HEADER_KEYS) or not line.endswith(b"\n"):
        raise BadSessionFile(
            f"{name}: the header is damaged (it has not exactly the keys of version {FORMAT_VERSION})"
        )
    revision = header["schema_revision"]
    if revision not in {rev for rev, _down, _message in history()}:
        raise BadSessionFile(
            f"{name} was written at schema revision {revision!r}, which this version does not know "
            f"(its newest is {HEAD_REVISION!r}): import it with a newer codemode_store"
        )
    session_id = header["session_id"]
    try:
        check_identifier(session_id, "session_id")
    except Exception as exc:
        raise BadSessionFile(f"{name}: the header's session_id is not a session name") from exc
    counts = header["counts"]
    known = set(tables.table_names())
    if (
        not isinstance(counts, dict)
        or not set(counts) <= known
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values())
        or not isinstance(header["body_bytes"], int)
        or not isinstance(header["body_sha256"], str)
    ):
        raise BadSessionFile(f"{name}: the header's counts, body_bytes or body_sha256 are damaged")
    return header


class _Importer:
    """Reads the body of a session file and writes its rows in one transaction of the target."""

    def __init__(self, conn: Connection, header: dict[str, Any], name: str) -> None:
        self.conn = conn
        self.header = header
        self.name = name
        self.session_id: str = header["session_id"]
        self.order = [t.table for t in tables.shared_tables()] + [t.table for t in tables.session_tables()]
        self.shared = {t.name: t for t in tables.shared_tables()}
        self.counts = {table.name: 0 for table in self.order}
        self.size = 0
        self.position = 0  # index in self.order of the table being read

    def run(self, file: IO[bytes]) -> SessionFileReport:
        """Read, check and insert every row; raise before the commit if anything does not hold."""
        if held_sessions(self.conn, [self.session_id]):
            raise SessionConflict(
                "the store already holds this session; nothing was imported "
                "(end it first, or import into another store)",
                [self.session_id],
            )
        digest = hashlib.sha256()
        read = 0
        batch: list[dict[str, Any]] = []
        batch_table: Table | None = None
        batch_bytes = 0
        number = 1
        while line := file.readline():
            number += 1
            digest.update(line)
            read += len(line)
            if read > self.header["body_bytes"]:
                raise self._bad(number, "the file goes on past the end its header gives")
            table, row = self._row(number, line)
            size = len(line)
            del line  # a large payload's line goes before the next is read
            if batch and table is not batch_table:
                self._insert(batch_table, batch)
                batch, batch_bytes = [], 0
            batch_table = table
            batch.append(row)
            batch_bytes += size
            del row
            if len(batch) >= _BATCH_ROWS or batch_bytes >= _BATCH_BYTES:
                self._insert(batch_table, batch)
                batch, batch_bytes = [], 0
        if batch and batch_table is not None:
            self._insert(batch_table, batch)
        if read != self.header["body_bytes"]:
            # The file changed between the check of its body and this read.
            raise BadSessionFile(f"{self.name} changed while it was imported; nothing was imported")
        if digest.hexdigest() != self.header["body_sha256"]:
            raise BadSessionFile(
                f"{self.name} was changed after it was written: its body's sha256 differs from its header's"
            )
        expected = {name: self.header["counts"].get(name, 0) for name in self.counts}
        if self.counts != expected:
            raise BadSessionFile(f"{self.name}: it holds {self.counts} rows, its header says {expected}")
        return SessionFileReport(self.session_id, self.counts, self.size)

    def _bad(self, number: int, reason: str) -> BadSessionFile:
        return BadSessionFile(f"{self.name}, line {number}: {reason}; nothing was imported")

    def _row(self, number: int, line: bytes) -> tuple[Table, dict[str, Any]]:
        if not line.endswith(b"\n"):
            raise self._bad(number, "the line is cut short (the file is truncated)")
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise self._bad(number, "not a JSON line (the file is damaged)") from None
        if not isinstance(entry, dict) or set(entry) != {"table", "row"}:
            raise self._bad(number, 'a line is {"table": ..., "row": {...}}')
        names = [table.name for table in self.order]
        if entry["table"] not in names:
            raise self._bad(number, f"no table {entry['table']!r} in this store")
        index = names.index(entry["table"])
        if index < self.position:
            raise self._bad(number, f"a row of {entry['table']} after the rows of {names[self.position]}")
        self.position = index
        table = self.order[index]
        try:
            row = decode_row(table, entry["row"])
        except RowError as exc:
            raise self._bad(number, str(exc)) from None
        if table.name not in self.shared and row.get(tables.SESSION) != self.session_id:
            raise self._bad(number, f"a row of session {row.get(tables.SESSION)!r}, not {self.session_id!r}")
        try:
            self.size += check_payload(row)
        except PayloadMismatch as exc:
            raise self._bad(number, exc.detail.split(" (run")[0]) from None
        self.counts[table.name] += 1
        return table, row

    def _insert(self, table: Table | None, batch: list[dict[str, Any]]) -> None:
        assert table is not None
        shared = self.shared.get(table.name)
        if shared is not None:
            present = shared.present(self.conn, [row[shared.key.name] for row in batch])
            batch = [row for row in batch if row[shared.key.name] not in present]
            if not batch:
                return
        self.conn.execute(insert(table), batch)
