"""Argument checks shared by every operation: identifiers, generations, requests.

Each check raises :class:`~codemode_store.errors.InvalidInput` naming what it
could of the key, before anything touches the database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput

MAX_IDENTIFIER_LENGTH = 256
MAX_GENERATION = 2**63 - 1


def check_identifier(
    value: object,
    what: str,
    *,
    session_id: str | None = None,
) -> str:
    """Return ``value`` as a valid session or cell id, or raise ``InvalidInput``.

    ``session_id`` names the session a cell id belongs to, for the message.
    """

    def reject(reason: str) -> InvalidInput:
        return InvalidInput(f"{what} {reason}", session_id=session_id)

    if not isinstance(value, str):
        raise reject(f"must be a string, not {type(value).__name__}")
    if not value:
        raise reject("must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise reject(f"is {len(value)} characters long; at most {MAX_IDENTIFIER_LENGTH}")
    if "\x00" in value:
        raise reject("must not contain NUL")
    if not is_encodable(value):
        raise reject("is not valid Unicode text (lone surrogate)")
    return str(value)


def check_generation(value: object, *, session_id: str, cell_id: str) -> int:
    """Return ``value`` as a generation (0 ≤ g ≤ 2^63−1), or raise ``InvalidInput``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"generation must be an integer, not {type(value).__name__} {value!r}",
            session_id=session_id,
            cell_id=cell_id,
        )
    if not 0 <= value <= MAX_GENERATION:
        raise InvalidInput(
            f"generation {value} is out of range 0..{MAX_GENERATION}",
            session_id=session_id,
            cell_id=cell_id,
        )
    return int(value)


def check_seconds(value: object, what: str, low: float, high: float) -> float:
    """Return ``value`` as a float of seconds from ``low`` to ``high``, or raise ``InvalidInput``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidInput(f"{what} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def is_encodable(text: str) -> bool:
    """Tell whether ``text`` can be stored as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_mapping(value: object) -> dict[str, Any]:
    # json.dumps takes dicts only; a nested Mapping of another type (already
    # checked by _check_json_value) is written as the object it stands for.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def canonical_json(value: Any) -> str:
    """Serialise ``value`` as canonical JSON: sorted keys, no spaces, no NaN."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain_mapping,
    )


def canonical_request(request: object, *, session_id: str, cell_id: str, generation: int) -> str | None:
    """Return the canonical JSON of an observe request, or ``None`` when absent."""
    if request is None:
        return None

    def reject(reason: str) -> InvalidInput:
        return InvalidInput(
            f"request {reason}", session_id=session_id, cell_id=cell_id, generation=generation
        )

    if not isinstance(request, Mapping):
        raise reject(f"must be a mapping, not {type(request).__name__}")
    _check_json_value(request, reject)
    text = canonical_json(dict(request))
    if not is_encodable(text):
        raise reject("holds text that is not valid Unicode (lone surrogate)")
    return text


def _check_json_value(value: object, reject: Any, depth: int = 0) -> None:
    if depth > 64:
        raise reject("is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise reject(f"holds a non-finite number {value!r}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise reject(f"has a key that is not a string: {key!r}")
            _check_json_value(item, reject, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json_value(item, reject, depth + 1)
        return
    raise reject(f"holds a value that is not JSON: {type(value).__name__}")
