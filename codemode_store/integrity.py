"""Integrity: check the database file and every stored payload.

:func:`check` runs SQLite's ``quick_check`` and re-hashes every stored payload
against its recorded length and sha256, a page of keys per read transaction,
and reports the rows that no longer match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    Connection,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    not_,
    or_,
    select,
    tuple_,
)

from .damage import storage_class
from .errors import NotADatabase
from .jsonable import json_object
from .progress import Progress
from .schema import metadata, observations
from .statements import holds_payload
from .transactions import Transactions

__all__ = ["CheckReport", "CorruptPayload", "DamagedRow", "check"]

o = observations.c

#: How many payload keys one read transaction of ``check`` covers.
CHECK_PAGE_ROWS = 512
#: At most this many payload bytes are held in memory at once (but always one row).
CHECK_CHUNK_BYTES = 8 * 1024 * 1024

_key_columns = (o.session_id, o.cell_id, o.generation)
_key = tuple_(*_key_columns)


def _key_params(prefix: str) -> Any:
    return tuple_(
        bindparam(f"{prefix}_session"), bindparam(f"{prefix}_cell"), bindparam(f"{prefix}_generation")
    )


_payload_total_bytes = select(func.coalesce(func.sum(o.payload_bytes), 0)).where(holds_payload)
_payload_keys = (
    select(*_key_columns, o.payload_bytes)
    .where(holds_payload, _key > _key_params("p_after"))
    .order_by(*_key_columns)
    .limit(bindparam("p_limit"))
)
_payload_range = (
    select(*_key_columns, o.state, o.payload_bytes, o.payload_sha256, o.payload)
    .where(holds_payload, _key >= _key_params("p_from"), _key <= _key_params("p_to"))
    .order_by(*_key_columns)
)
#: Sorts before every key: identifiers are never empty, generations never negative.
_BEFORE_FIRST_KEY = ("", "", -1)


@dataclass(frozen=True, slots=True)
class CorruptPayload:
    """A stored payload that no longer matches its recorded length or sha256."""

    session_id: str
    cell_id: str
    generation: int
    state: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Return the row's key and the reason as JSON-able values."""
        return json_object(self, ("session_id", "cell_id", "generation", "state", "reason"))


@dataclass(frozen=True, slots=True)
class DamagedRow:
    """A row holding a value the store never writes: another storage class, or a broken CHECK.

    ``key`` is the row's primary key, column name to value (a value that is not
    TEXT or INTEGER, itself damage, is shown as its SQL literal).
    """

    table: str
    key: dict[str, Any]
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Return the table, the key and the reason as JSON-able values."""
        return {"table": self.table, "key": dict(self.key), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``check`` found.

    ``quick_check`` lists SQLite's complaints about the file (empty when it is
    sound), or is ``None`` where the backend has no such check (PostgreSQL).
    """

    quick_check: tuple[str, ...] | None
    payloads: int
    payload_bytes: int
    corrupt: tuple[CorruptPayload, ...]
    #: Why the payload scan stopped short (a malformed file), or ``None``.
    scan_error: str | None = None
    #: Rows whose values are of a storage class the schema does not give them,
    #: or break a CHECK constraint (SQLite keeps what a hand edit writes).
    damaged: tuple[DamagedRow, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether nothing is wrong."""
        return not self.quick_check and not self.corrupt and self.scan_error is None and not self.damaged

    @property
    def problems(self) -> int:
        """Count what is wrong: quick-check lines, corrupt payloads, damaged rows, a stopped scan."""
        found = len(self.quick_check or ()) + len(self.corrupt) + len(self.damaged)
        return found + (self.scan_error is not None)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        quick = "not applicable" if self.quick_check is None else list(self.quick_check) or "ok"
        keys = ("ok", "quick_check", "payloads", "payload_bytes", "corrupt", "damaged", "scan_error")
        return json_object(self, keys, quick_check=quick)


def _quick_check(store: Transactions) -> tuple[str, ...] | None:
    """Return SQLite's complaints about the file (none when sound), or ``None`` off SQLite."""
    if store.engine.dialect.name != "sqlite":
        return None
    lines: list[str] = []
    try:
        store.read(lambda conn: _quick_check_lines(conn, lines))
    except NotADatabase as exc:
        # SQLite ends the list with an error when a page is too damaged to walk.
        lines.append(exc.detail)
    return () if lines == ["ok"] else tuple(lines)


def _quick_check_lines(conn: Connection, lines: list[str]) -> None:
    for row in conn.exec_driver_sql("PRAGMA quick_check"):
        # One row may carry several lines, one per problem of a b-tree page.
        lines.extend(str(row[0]).splitlines())


def _verify(row: Sequence[Any]) -> tuple[int, CorruptPayload | None]:
    """Return a payload row's byte count and what is wrong with it (``None`` when sound)."""
    session_id, cell_id, generation, state, size, sha256, payload = row
    problems = []
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        if size != len(data):
            problems.append(f"the payload is {len(data)} bytes, the row says {size}")
        if sha256 != hashlib.sha256(data).digest():
            problems.append("its sha256 differs from the one recorded")
    else:
        # A hand edit in SQLite may leave TEXT (or a number) where a BLOB belongs.
        problems.append(f"the payload is stored as {storage_class(payload)}, not as BLOB")
        data = b""
    if not problems:
        return len(data), None
    return len(data), CorruptPayload(session_id, cell_id, generation, state, "; ".join(problems))


@dataclass(slots=True)
class _Scan:
    """What the payload scan has seen so far; kept when a page fails half-way."""

    rows: int = 0
    size: int = 0
    corrupt: list[CorruptPayload] = field(default_factory=list)


def _check_page(conn: Connection, after: tuple[str, str, int], scan: _Scan) -> tuple[str, str, int] | None:
    """Re-hash the payloads of the next page of keys after ``after``; return its last key."""
    keys = conn.execute(
        _payload_keys,
        {
            "p_after_session": after[0],
            "p_after_cell": after[1],
            "p_after_generation": after[2],
            "p_limit": CHECK_PAGE_ROWS,
        },
    ).all()
    if not keys:
        return None
    for first, last in _chunks(keys):
        params = {
            "p_from_session": first[0],
            "p_from_cell": first[1],
            "p_from_generation": first[2],
            "p_to_session": last[0],
            "p_to_cell": last[1],
            "p_to_generation": last[2],
        }
        # Rows arrive one at a time from the cursor: a chunk is never held whole.
        for row in conn.execute(_payload_range, params):
            scan.rows += 1
            size, problem = _verify(row)
            scan.size += size
            if problem is not None:
                scan.corrupt.append(problem)
    # The key as read: a damaged generation may not be an integer, and still sorts.
    return (keys[-1][0], keys[-1][1], keys[-1][2])


def _chunks(keys: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """Yield (first key, last key) of runs of rows holding at most ``CHECK_CHUNK_BYTES``."""
    start = 0
    held = 0
    for index, row in enumerate(keys):
        size = max(row[3], 0) if type(row[3]) is int else 0
        if index > start and held + size > CHECK_CHUNK_BYTES:
            yield keys[start], keys[index - 1]
            start, held = index, 0
        held += size
    yield keys[start], keys[-1]


def _scan_payloads(store: Transactions, scan: _Scan, progress: Progress | None) -> None:
    total = store.read(lambda conn: int(conn.execute(_payload_total_bytes).scalar_one() or 0))
    after: tuple[str, str, int] | None = _BEFORE_FIRST_KEY
    while after is not None:
        after = store.read(_page_checker(after, scan))
        if progress is not None:
            progress(scan.size, max(total, scan.size))


def _page_checker(
    after: tuple[str, str, int], scan: _Scan
) -> Callable[[Connection], tuple[str, str, int] | None]:
    return lambda conn: _check_page(conn, after, scan)


#: Columns that the payload scan verifies on the rows it reads: not listed twice.
_PAYLOAD_COLUMNS = frozenset(("payload", "payload_bytes", "payload_sha256"))


def _storage_classes(column: Column[Any]) -> tuple[str, ...] | None:
    """Return the SQLite storage classes (as ``typeof`` names them) the store writes to ``column``."""
    kind = column.type
    if isinstance(kind, LargeBinary):
        classes: tuple[str, ...] = ("blob",)
    elif isinstance(kind, (Integer, Boolean)):
        classes = ("integer",)
    elif isinstance(kind, String):
        classes = ("text",)
    else:
        return None
    return (*classes, "null") if column.nullable else classes


def _damage_probes(table: Table) -> list[tuple[str | None, str, ColumnElement[Any]]]:
    """Return, per column and CHECK constraint: the column (if one), a reason, the condition finding it."""
    probes: list[tuple[str | None, str, ColumnElement[Any]]] = []
    for column in table.columns:
        classes = _storage_classes(column)
        if classes is None:
            continue
        wrong: ColumnElement[Any] = func.typeof(column).not_in(classes)
        if table is observations and column.name in _PAYLOAD_COLUMNS:
            wrong = and_(not_(holds_payload), wrong)
        expected = " or ".join(name.upper() for name in classes)
        probes.append((column.name, f"not as {expected}", wrong))
    for constraint in table.constraints:
        if isinstance(constraint, CheckConstraint):
            # The constraint's own SQL (the schema's, never a user value), negated.
            holds: ColumnElement[Any] = literal_column(f"({constraint.sqltext})")
            probes.append((None, f"it breaks the check {constraint.name}", not_(holds)))
    return probes


def _shown(value: Any) -> Any:
    """Return a key value as JSON can hold it: TEXT and INTEGER as they are, others as SQL literals."""
    if value is None or type(value) in (str, int, float):
        return value
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return repr(value)


def _damaged_rows(conn: Connection, table: Table) -> list[DamagedRow]:
    """Return the rows of ``table`` that one of its damage probes finds, with every reason."""
    probes = _damage_probes(table)
    key = list(table.primary_key.columns)
    typeofs = {column.name: func.typeof(column) for column in table.columns}
    query = select(*key, *typeofs.values(), *(probe for _, _, probe in probes)).where(
        or_(*(probe for _, _, probe in probes))
    )
    found = []
    for row in conn.execute(query):
        classes = dict(zip(typeofs, row[len(key) :], strict=False))
        hits = row[len(key) + len(typeofs) :]
        reasons = [
            reason if column is None else f"{column} is stored as {str(classes[column]).upper()}, {reason}"
            for (column, reason, _), hit in zip(probes, hits, strict=True)
            if hit
        ]
        shown_key = {column.name: _shown(value) for column, value in zip(key, row, strict=False)}
        found.append(DamagedRow(table.name, shown_key, "; ".join(reasons)))
    return found


def _scan_rows(store: Transactions) -> tuple[DamagedRow, ...]:
    """Find rows holding values the store never writes (SQLite: PostgreSQL enforces types and CHECKs)."""
    if store.engine.dialect.name != "sqlite":
        return ()
    # typeof() reads a column's type, not a large payload's pages.
    tables = metadata.sorted_tables
    return tuple(store.read(lambda conn: [row for table in tables for row in _damaged_rows(conn, table)]))


def check(store: Transactions, *, progress: Progress | None = None) -> CheckReport:
    """Check the database file and re-hash every stored payload against its sha256.

    Payloads are read a page of keys per read transaction and a few megabytes
    at a time, never all at once; ``progress`` counts payload bytes. A file so
    damaged that the scan cannot go on gives a report with ``scan_error``.
    """
    quick = _quick_check(store)
    scan = _Scan()
    error = None
    damaged: tuple[DamagedRow, ...] = ()
    try:
        damaged = _scan_rows(store)
        _scan_payloads(store, scan, progress)
    except NotADatabase as exc:
        # A damaged page, which the quick check has most likely named: report it, do not raise.
        error = f"the payload scan stopped after {scan.rows} payloads: {exc}"
    return CheckReport(quick, scan.rows, scan.size, tuple(scan.corrupt), error, damaged)
