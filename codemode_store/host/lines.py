"""The request lines of the reference host: how long and how deep a request may be.

A request line is read with a bound (:func:`bounded_lines`): a line longer than
:data:`MAX_LINE_BYTES` is never held whole in memory; it is skipped up to its
newline and stands as a :class:`LongLine`, which the host answers
``InvalidInput``. A line is parsed by :func:`parse` as strict JSON (no
``NaN``, no number too large for a double) nested at most :data:`MAX_DEPTH`
deep, so that no request, however built, can exhaust the interpreter's stack
when it is parsed, checked or its ``id`` repeated in the answer. Blank lines
(only JSON whitespace) are not requests: :func:`is_blank`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "LongLine",
    "TooDeep",
    "bounded_lines",
    "depth_exceeds",
    "is_blank",
    "parse",
]

#: The longest request line, in bytes, its newline not counted (8 MiB).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: The deepest nesting of a request: its object is level 1, so an ``id`` may
#: hold arrays or objects nested 62 deep below the request's own level.
MAX_DEPTH = 64
#: JSON's whitespace (RFC 8259): what a blank line may hold.
_WHITESPACE = b" \t\r\n"
_SKIP_CHUNK = 1 << 20


class TooDeep(ValueError):
    """A request nested deeper than :data:`MAX_DEPTH`."""


class LongLine:
    """A request line longer than :data:`MAX_LINE_BYTES`, skipped unread: its size only."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"LongLine({self.size})"


def is_blank(line: bytes | str) -> bool:
    """Tell whether a line holds nothing but JSON whitespace (it is not a request)."""
    if isinstance(line, str):
        return not line.strip(" \t\r\n")
    return not line.strip(_WHITESPACE)


def bounded_lines(requests: IO[bytes] | Iterable[bytes]) -> Iterator[bytes | LongLine]:
    """Yield the lines of a binary stream, each at most :data:`MAX_LINE_BYTES` long, or a ``LongLine``.

    A stream with ``readline`` is read with a bound, so a long line costs no
    more memory than the bound; any other iterable of lines is taken as it is
    and its long lines are told apart by their length.
    """
    readline = getattr(requests, "readline", None)
    if readline is None:
        for line in requests:
            content = len(line) - line.endswith(b"\n")
            yield LongLine(content) if content > MAX_LINE_BYTES else line
        return
    while True:
        line = readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if line.endswith(b"\n") or len(line) <= MAX_LINE_BYTES:
            yield line
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = readline(_SKIP_CHUNK)
            if not line:
                break
            size += len(line)
        yield LongLine(size - line.endswith(b"\n"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse(line: bytes | str) -> Any:
    """Return the JSON value of a line; ``ValueError`` if it is not strict JSON or is too deep."""
    try:
        value = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise TooDeep(f"a request must not be nested deeper than {MAX_DEPTH} levels") from None
    if depth_exceeds(value, MAX_DEPTH):
        raise TooDeep(f"a request must not be nested deeper than {MAX_DEPTH} levels")
    return value


def depth_exceeds(value: object, limit: int) -> bool:
    """Tell whether ``value`` nests lists, tuples or mappings deeper than ``limit`` (a scalar is 0 deep).

    Iterative: a value of any depth is measured without recursion.
    """
    if not isinstance(value, (list, tuple, dict)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if level > limit:
            return True
        children = current.values() if isinstance(current, dict) else current
        stack.extend((child, level + 1) for child in children if isinstance(child, (list, tuple, dict)))
    return False
