"""Write a batch of copied rows into the target: PostgreSQL's ``COPY``, else an ``executemany``.

On PostgreSQL an ``executemany`` of an ``INSERT`` is one statement per row (in
psycopg's pipeline); ``COPY ... FROM STDIN`` in binary format streams the
batch as one command, about four times faster, payloads sent as they are (no
hex text). The columns' types come from the schema; a table with a column type
not listed here falls back to the ``INSERT``. A driver error is raised as
SQLAlchemy's ``DBAPIError``, as SQLAlchemy's own execution would raise it, so
the one error boundary (``translate``) names it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Integer, LargeBinary, String, Table, Text, insert
from sqlalchemy.exc import DBAPIError

__all__ = ["insert_rows"]

#: PostgreSQL's name of each column type the schema uses, for a binary COPY.
_POSTGRES_TYPES: tuple[tuple[type[Any], str], ...] = (
    (Boolean, "bool"),
    (BigInteger, "int8"),
    (Integer, "int4"),
    (LargeBinary, "bytea"),
    (Text, "text"),
    (String, "varchar"),
)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (every column of ``table`` each) in the transaction of ``conn``."""
    if not rows:
        return
    copy = _copy_plan(table) if conn.dialect.name == "postgresql" else None
    if copy is None:
        conn.execute(insert(table), list(rows))
        return
    statement, names, types = copy
    driver: Any = conn.connection.driver_connection
    error: type[Exception] = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as stream:
            stream.set_types(types)
            for row in rows:
                stream.write_row([row[name] for name in names])
    except error as exc:
        failure: Any = exc
        lost = conn.dialect.is_disconnect(failure, driver, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            None,
            exc,
            error,
            hide_parameters=True,  # rows hold payloads: never in a message
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc


@functools.cache
def _copy_plan(table: Table) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """Return the COPY statement, column names and PostgreSQL types of ``table``, or ``None``."""
    names, types = [], []
    for column in table.c:
        found = next((name for kind, name in _POSTGRES_TYPES if isinstance(column.type, kind)), None)
        if found is None:
            return None
        names.append(column.name)
        types.append(found)
    # Names from the schema, never from input: quoted as identifiers all the same.
    columns = ", ".join(f'"{name}"' for name in names)
    return f'COPY "{table.name}" ({columns}) FROM STDIN (FORMAT BINARY)', tuple(names), tuple(types)
