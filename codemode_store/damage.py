"""Values read back from the database, checked before anything of them is handed out.

The database holds what the store wrote, unless someone altered it behind the
store's back: an operator's ``UPDATE`` in the ``sqlite3`` shell, a disk that
returned other bytes. SQLite keeps whatever storage class such an edit gives a
value (a BLOB column takes TEXT, an INTEGER column takes text that is not a
number), so every value a read hands on is checked to be of the type the
schema gives it, and every payload to be the very bytes whose length and
sha256 were recorded with it. Anything else raises :class:`DatabaseError`
naming the row (docs/errors.md), never a decoder's ``TypeError`` and never
bytes other than those recorded.

The checks are ``type(value) is ...`` comparisons and one sha256 over the
payload: no query is added (docs/performance.md measures the cost).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from .errors import DatabaseError

__all__ = [
    "checked_cell",
    "checked_int",
    "checked_ints",
    "checked_payload",
    "checked_text",
    "damaged",
    "storage_class",
]

#: What a damaged row's error adds: the cause, and the command that lists such rows.
_ADVICE = "the database was altered or damaged (`codemode-store check` lists such rows)"

_CLASSES = {type(None): "NULL", int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}


def storage_class(value: object) -> str:
    """Return the SQLite storage class of a value read back (``TEXT``, ``BLOB``, ...)."""
    return _CLASSES.get(type(value), type(value).__name__)


def damaged(what: str, session_id: Any = None, cell_id: Any = None, generation: Any = None) -> DatabaseError:
    """Return the error of a row that is not what the store wrote, naming the row."""
    return DatabaseError(
        f"{what}; {_ADVICE}",
        session_id=session_id if type(session_id) is str else None,
        cell_id=cell_id if type(cell_id) is str else None,
        generation=generation if type(generation) is int else None,
    )


def checked_int(value: Any, column: str, session_id: Any, cell_id: Any, generation: Any) -> Any:
    """Return an INTEGER (or NULL) column's value; any other storage class is damage."""
    if value is None or type(value) is int:
        return value
    raise damaged(
        f"{column} is stored as {storage_class(value)}, not as INTEGER", session_id, cell_id, generation
    )


def checked_ints(values: Any, what: str, session_id: Any, cell_id: Any = None) -> list[int | None]:
    """Return aggregates (counts, sums, latest times) checked to be INTEGER or NULL.

    SQLite's ``sum`` over a column holding a value of another class comes back
    REAL, and its ``max`` returns TEXT above every number: both are damage.
    PostgreSQL's NUMERIC sums are taken as integers.
    """
    return [
        # PostgreSQL sums BIGINT as NUMERIC (its types hold no damage of this kind).
        int(value) if type(value) is Decimal else checked_int(value, what, session_id, cell_id, None)
        for value in values
    ]


def checked_text(value: Any, column: str, session_id: Any, cell_id: Any, generation: Any) -> Any:
    """Return a TEXT (or NULL) column's value; any other storage class is damage."""
    if value is None or type(value) is str:
        return value
    raise damaged(
        f"{column} is stored as {storage_class(value)}, not as TEXT", session_id, cell_id, generation
    )


def checked_cell(row: Any, session_id: str, cell_id: str, generation: int | None) -> tuple[bool, int | None]:
    """Return a cell row's ``(closed, last_generation)``, each checked to be of its type."""
    closed, last = row
    # SQLite gives a boolean as 0 or 1, PostgreSQL as a bool.
    if closed not in (0, 1) or type(closed) not in (int, bool):
        raise damaged(
            f"the cell's closed flag is {storage_class(closed)} {closed!r}, not 0 or 1",
            session_id,
            cell_id,
            generation,
        )
    return bool(closed), checked_int(last, "the cell's last_generation", session_id, cell_id, generation)


def checked_payload(
    stored: Any, size: Any, sha256: Any, session_id: Any, cell_id: Any, generation: Any
) -> bytes:
    """Return a stored payload after checking it is a BLOB of the recorded length and sha256."""
    data: bytes
    if type(stored) is bytes:
        data = stored
    elif isinstance(stored, (bytearray, memoryview)):
        data = bytes(stored)
    else:
        raise damaged(
            f"the payload is stored as {storage_class(stored)}, not as BLOB", session_id, cell_id, generation
        )
    if size != len(data) or sha256 != hashlib.sha256(data).digest():
        raise damaged(
            "the stored payload is not the one recorded (its length or sha256 differs)",
            session_id,
            cell_id,
            generation,
        )
    return data
