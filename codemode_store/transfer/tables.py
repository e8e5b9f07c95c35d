"""What a transfer moves, derived from ``schema.py``, and the queries that read it.

Every table of the schema with a ``session_id`` column belongs to sessions
(``cells``, ``observations``): a transfer moves their rows whole, every
column, in the schema's dependency order. A table without one is store-wide
(say, a table of host ids): a transfer moves only the rows that the moved rows
refer to through a column of the same name as its key, and only when the
target lacks them. Columns and tables a later schema revision adds therefore
come along without a change here.

Rows are read a page of keys at a time, in key order, and then fetched with
their payloads in runs of at most ``CHUNK_BYTES`` (always at least one row),
so neither a million rows nor a 64 MiB payload is ever held more than once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    tuple_,
)

from ..schema import metadata

__all__ = [
    "CHUNK_BYTES",
    "PAGE_ROWS",
    "PAYLOAD",
    "SESSION",
    "SHA256_COLUMN",
    "SIZE_COLUMN",
    "SessionTable",
    "SharedTable",
    "session_tables",
    "sessions_query",
    "shared_tables",
    "table_names",
    "totals",
]

#: The column that ties a row to its session.
SESSION = "session_id"
#: Keys read per page.
PAGE_ROWS = 2048
#: At most this many payload bytes are fetched at once (but always one row).
CHUNK_BYTES = 8 * 1024 * 1024
#: The payload column, its size and its sha256 (``observations``).
PAYLOAD = "payload"
SIZE_COLUMN = "payload_bytes"
SHA256_COLUMN = "payload_sha256"

Row = dict[str, Any]


def _key_bound(columns: Sequence[Column[Any]], prefix: str) -> ColumnElement[Any]:
    return tuple_(*(bindparam(f"{prefix}_{column.name}") for column in columns))


@dataclass(frozen=True, slots=True)
class SessionTable:
    """A table whose rows belong to sessions, with the queries that stream one session's rows."""

    table: Table
    #: The key columns after ``session_id``, in key order.
    keys: tuple[Column[Any], ...]
    #: Every column of the table, in the schema's order (what a row carries).
    columns: tuple[str, ...]
    first_page: Select[Any]
    next_page: Select[Any]
    chunk: Select[Any]
    metadata_chunk: Select[Any]
    count: Select[Any]
    totals: Select[Any]

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    def rows(self, conn: Connection, session_id: str, *, metadata_only: bool = False) -> Iterator[list[Row]]:
        """Yield the session's rows in key order, in lists of at most ``CHUNK_BYTES`` of payload.

        With ``metadata_only`` the rows leave out the ``payload`` column (to
        compare sessions by their recorded sha256 instead of their bytes).
        """
        after: Sequence[Any] | None = None
        while True:
            params: dict[str, Any] = {"p_session": session_id, "p_limit": PAGE_ROWS}
            if after is None:
                keys = conn.execute(self.first_page, params).all()
            else:
                params.update({f"p_after_{c.name}": v for c, v in zip(self.keys, after, strict=True)})
                keys = conn.execute(self.next_page, params).all()
            if not keys:
                return
            for first, last in _runs(keys, len(self.keys)):
                bounds = {"p_session": session_id}
                bounds.update({f"p_from_{c.name}": v for c, v in zip(self.keys, first, strict=True)})
                bounds.update({f"p_to_{c.name}": v for c, v in zip(self.keys, last, strict=True)})
                result = conn.execute(self.metadata_chunk if metadata_only else self.chunk, bounds)
                names = tuple(result.keys())
                yield [dict(zip(names, row, strict=True)) for row in result]
            after = tuple(keys[-1][: len(self.keys)])


def _runs(keys: Sequence[Any], width: int) -> Iterator[tuple[Sequence[Any], Sequence[Any]]]:
    """Yield (first key, last key) of runs of rows holding at most ``CHUNK_BYTES`` of payload."""
    start = 0
    held = 0
    for index, row in enumerate(keys):
        size = max(int(row[width] or 0), 0)
        if index > start and held + size > CHUNK_BYTES:
            yield keys[start][:width], keys[index - 1][:width]
            start, held = index, 0
        held += size
    yield keys[start][:width], keys[-1][:width]


def _session_table(table: Table) -> SessionTable:
    session = table.c[SESSION]
    keys = tuple(column for column in table.primary_key.columns if column.name != SESSION)
    # Only a held payload counts: a tombstone keeps its size but no bytes.
    size: ColumnElement[Any] = (
        case((table.c[PAYLOAD].is_not(None), table.c[SIZE_COLUMN]), else_=0)
        if PAYLOAD in table.c and SIZE_COLUMN in table.c
        else literal(0)
    )
    in_session = session == bindparam("p_session")
    page = select(*keys, size).where(in_session).order_by(*keys).limit(bindparam("p_limit"))
    next_page = page.where(tuple_(*keys) > _key_bound(keys, "p_after"))
    in_run = and_(
        in_session, tuple_(*keys) >= _key_bound(keys, "p_from"), tuple_(*keys) <= _key_bound(keys, "p_to")
    )
    chunk = select(*table.c).where(in_run).order_by(*keys)
    metadata_chunk = select(*(c for c in table.c if c.name != PAYLOAD)).where(in_run).order_by(*keys)
    total_size = func.coalesce(func.sum(size), 0)
    totals = select(session, func.count(), total_size).group_by(session)
    columns = tuple(column.name for column in table.c)
    count = select(func.count()).select_from(table).where(in_session)
    return SessionTable(table, keys, columns, page, next_page, chunk, metadata_chunk, count, totals)


@dataclass(frozen=True, slots=True)
class SharedTable:
    """A store-wide table, and for each session table the column that refers to its key."""

    table: Table
    key: Column[Any]
    #: (session table, referring column) pairs.
    referrers: tuple[tuple[Table, Column[Any]], ...]
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    def referenced(self, conn: Connection, session_id: str) -> list[Any]:
        """Return the keys of this table that the session's rows refer to, sorted."""
        found: set[Any] = set()
        for referrer, column in self.referrers:
            query = select(column).distinct().where(referrer.c[SESSION] == session_id, column.is_not(None))
            found.update(conn.execute(query).scalars())
        return sorted(found)

    def rows(self, conn: Connection, keys: Sequence[Any]) -> list[Row]:
        """Return the rows of the given keys (a store-wide table's rows are small)."""
        if not keys:
            return []
        query = select(*self.table.c).where(self.key.in_(list(keys))).order_by(self.key)
        return [dict(row) for row in conn.execute(query).mappings()]

    def every_row(self, conn: Connection) -> list[Row]:
        """Return every row of the table (a whole-store copy takes them all)."""
        return [dict(row) for row in conn.execute(select(*self.table.c).order_by(self.key)).mappings()]

    def present(self, conn: Connection, keys: Sequence[Any]) -> set[Any]:
        """Return which of ``keys`` the table already holds."""
        if not keys:
            return set()
        return set(conn.execute(select(self.key).where(self.key.in_(list(keys)))).scalars())


@functools.cache
def session_tables() -> tuple[SessionTable, ...]:
    """Return the session tables, parents before children (the order rows must be inserted in)."""
    return tuple(_session_table(t) for t in metadata.sorted_tables if SESSION in t.c)


@functools.cache
def shared_tables() -> tuple[SharedTable, ...]:
    """Return the store-wide tables that session rows refer to by a column named as their key."""
    found = []
    for table in metadata.sorted_tables:
        if SESSION in table.c or len(table.primary_key.columns) != 1:
            continue
        (key,) = table.primary_key.columns
        referrers = tuple((t.table, t.table.c[key.name]) for t in session_tables() if key.name in t.table.c)
        if referrers:
            found.append(SharedTable(table, key, referrers, tuple(c.name for c in table.c)))
    return tuple(found)


def sessions_query(session_ids: Sequence[str] | None) -> Select[Any]:
    """Return the query of the sessions a transfer covers (every one, or those named that exist)."""
    first = session_tables()[0].table
    query = select(first.c[SESSION]).distinct().order_by(first.c[SESSION])
    if session_ids is not None:
        query = query.where(first.c[SESSION].in_(list(session_ids)))
    return query


def totals(conn: Connection, session_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Return (rows, payload bytes) of each named session, over every session table."""
    found: dict[str, list[int]] = {s: [0, 0] for s in session_ids}
    wanted = set(session_ids)
    for spec in session_tables():
        for session_id, rows, size in conn.execute(spec.totals):
            if session_id in wanted:
                found[session_id][0] += int(rows)
                found[session_id][1] += int(size)
    return {s: (rows, size) for s, (rows, size) in found.items()}


def table_names() -> list[str]:
    """Return the names of the tables a transfer moves: store-wide ones first, then the sessions'."""
    return [t.table.name for t in shared_tables()] + [t.table.name for t in session_tables()]
