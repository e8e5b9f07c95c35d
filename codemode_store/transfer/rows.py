"""A row as it travels: checked payloads, JSON values, and a digest of a session's rows.

A row is a ``dict`` of column name to value, every column of its table. In a
session file (and in the digest that compares two copies of a session) a
binary value is base64 text and every other value is as JSON has it.
:func:`decode_row` is the strict way back: it accepts exactly the columns of
the table, each of its column's type, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Table, Text

from ..validation import MAX_GENERATION
from .errors import PayloadMismatch
from .tables import PAYLOAD, SESSION, SHA256_COLUMN, SIZE_COLUMN

__all__ = ["check_payload", "decode_row", "digest_rows", "encode_row"]


def check_payload(row: Mapping[str, Any]) -> int:
    """Raise ``PayloadMismatch`` unless a held payload matches its size and sha256; return its size."""
    payload = row.get(PAYLOAD)
    if payload is None:
        return 0
    data = bytes(payload)
    problems = []
    if row.get(SIZE_COLUMN) != len(data):
        problems.append(f"the payload is {len(data)} bytes, the row says {row.get(SIZE_COLUMN)}")
    recorded = row.get(SHA256_COLUMN)
    if recorded is None or hashlib.sha256(data).digest() != bytes(recorded):
        problems.append("its sha256 differs from the one recorded")
    if problems:
        raise PayloadMismatch(
            "; ".join(problems) + " (run `codemode-store check` on the source)",
            session_id=row.get(SESSION),
            cell_id=row.get("cell_id"),
            generation=row.get("generation"),
        )
    return len(data)


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return a row as JSON values: binary columns as base64 text."""
    return {
        name: base64.b64encode(value).decode("ascii") if isinstance(value, (bytes, memoryview)) else value
        for name, value in row.items()
    }


def digest_rows(batches: Iterable[Iterable[Mapping[str, Any]]]) -> bytes:
    """Return a sha256 over rows in order (their JSON values): equal rows, equal digest."""
    digest = hashlib.sha256()
    for batch in batches:
        for row in batch:
            digest.update(json.dumps(encode_row(row), separators=(",", ":")).encode())
            digest.update(b"\n")
    return digest.digest()


class RowError(ValueError):
    """A value of a row in a session file is not one its column can hold."""


def decode_row(table: Table, values: object) -> dict[str, Any]:
    """Return the row ``values`` (JSON values) stands for; ``RowError`` unless it fits ``table``."""
    if not isinstance(values, dict):
        raise RowError(f"a row of {table.name} is a JSON object, not {type(values).__name__}")
    names = set(table.c.keys())
    unknown = sorted(set(values) - names)
    if unknown:
        raise RowError(f"{table.name} has no column {', '.join(map(repr, unknown))}")
    row: dict[str, Any] = {}
    for column in table.c:
        if column.name not in values:
            if column.nullable or column.server_default is not None:
                continue  # a column a later revision added: the database's default
            raise RowError(f"the row of {table.name} has no {column.name!r}")
        row[column.name] = _decode(column.name, column.type, column.nullable, values[column.name])
    return row


def _decode(name: str, kind: Any, nullable: bool | None, value: object) -> Any:
    if value is None:
        if not nullable:
            raise RowError(f"{name} is null, which it may not be")
        return None
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise RowError(f"{name} is true or false, not {value!r}")
        return value
    if isinstance(kind, (BigInteger, Integer)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not -MAX_GENERATION - 1 <= value <= MAX_GENERATION
        ):
            raise RowError(f"{name} is a whole number, not {_short(value)}")
        return value
    if isinstance(kind, LargeBinary):
        if not isinstance(value, str):
            raise RowError(f"{name} is base64 text, not {_short(value)}")
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise RowError(f"{name} is not valid base64") from exc
    if isinstance(kind, (String, Text)):
        if not isinstance(value, str):
            raise RowError(f"{name} is text, not {_short(value)}")
        length = getattr(kind, "length", None)
        if length is not None and len(value) > length:
            raise RowError(f"{name} is longer than {length} characters")
        if "\0" in value:
            raise RowError(f"{name} holds a NUL character")
        return value
    raise RowError(f"{name} has a type this version cannot read ({kind!r})")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
