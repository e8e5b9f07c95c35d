"""Text for people: escaped payload text, image summaries, aligned tables.

Everything a payload (or an identifier) contributes to the terminal goes
through :func:`escape` first: a stored outcome must not be able to recolour,
move the cursor, retitle the window or rewrite earlier lines.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from ..observation import CellSummary, Observation
from ..wire import ImageItem, TextItem

if TYPE_CHECKING:  # they import SQLAlchemy, which `display` must not load for the CLI
    from ..hosts import HostInfo
    from .admin import RevisionInfo
    from .inspection import SessionSummary, StoreStats

__all__ = [
    "CELL_COLUMNS",
    "CONTROL_CHARACTERS",
    "HISTORY_COLUMNS",
    "HOST_COLUMNS",
    "SESSION_COLUMNS",
    "Columns",
    "ImageSummary",
    "Paint",
    "cell_row",
    "cells_table",
    "escape",
    "format_table",
    "format_time",
    "history_row",
    "history_table",
    "host_row",
    "observation_text",
    "quoted",
    "revisions_table",
    "session_row",
    "sessions_table",
    "stats_text",
    "stream_table",
    "summarise_image",
]

# C0 and C1 controls, DEL, line and paragraph separators, and the invisible
# bidirectional marks and overrides that can make text display in another order.
_CONTROLS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    # Lone surrogates (a file name that is not UTF-8): no terminal can print them.
    "\ud800-\udfff"
)
#: The characters :func:`escape` writes as escapes (besides newline and tab), as a regex class body.
CONTROL_CHARACTERS = _CONTROLS
_UNSAFE_IN_TEXT = re.compile(f"[{_CONTROLS}]")
_UNSAFE_IN_LINE = re.compile(f"[\t\n{_CONTROLS}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, keep_layout: bool = False) -> str:
    """Return ``text`` with every terminal control character written as an escape.

    ``keep_layout`` keeps newlines and tabs (for the body of a text item);
    otherwise they are escaped too, so the result stays on one line.
    """
    pattern = _UNSAFE_IN_TEXT if keep_layout else _UNSAFE_IN_LINE
    return pattern.sub(_escaped, text)


def quoted(text: str) -> str:
    """Return ``text`` quoted as error messages quote ids (``repr``), controls escaped once."""
    return escape(repr(text))


# -- images ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """What an image item holds, without its data.

    ``media_type`` and ``decoded_bytes`` come from a ``data:`` URL (``None``
    when the URL is not one, or its data does not decode); ``url`` is set for
    an image given by reference instead.
    """

    media_type: str | None
    decoded_bytes: int | None
    detail: str | None
    url: str | None = None
    problem: str | None = None


def summarise_image(item: ImageItem) -> ImageSummary:
    """Return the media type, decoded size and detail of an image item."""
    url = item.image_url
    if url[:5].lower() != "data:":
        return ImageSummary(None, None, item.detail, url=url)
    header, comma, data = url[5:].partition(",")
    if not comma:
        return ImageSummary(None, None, item.detail, problem="data URL without a comma")
    params = header.split(";")
    media_type = params[0] or None
    if params[-1].lower() == "base64" and len(params) > 1:
        try:
            size = len(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            return ImageSummary(media_type, None, item.detail, problem="invalid base64 data")
    else:
        size = len(unquote_to_bytes(data))
    return ImageSummary(media_type, size, item.detail)


def _image_line(summary: ImageSummary) -> str:
    if summary.url is not None:
        url = summary.url if len(summary.url) <= 80 else summary.url[:77] + "..."
        what = f"linked from {escape(url)}"
    else:
        media = escape(summary.media_type) if summary.media_type else "no media type"
        size = "size unknown" if summary.decoded_bytes is None else f"{summary.decoded_bytes:,} bytes"
        what = f"{media}, {size}"
        if summary.problem:
            what += f" ({summary.problem})"
    detail = f", detail {escape(summary.detail)}" if summary.detail else ""
    return f"image: {what}{detail}"


# -- tables ----------------------------------------------------------------------------


def _width(text: str) -> int:
    """Return how many terminal columns ``text`` takes.

    ``wcwidth`` keeps the Unicode tables: wide East Asian characters and most
    emoji take two columns; combining and enclosing marks, zero-width joiners
    and spaces, variation selectors and Hangul jamo vowels take none.
    """
    if text.isascii():
        return len(text)  # the common case (escaped ids, numbers, times) needs no tables
    # Imported on first need: it costs 20 ms, which an all-ASCII table, an
    # error line or `--help` should not pay.
    import wcwidth

    return int(wcwidth.width(text))


#: Per column index, a function that colours a (padded) cell: see ``stream_table``.
Paint = Mapping[int, Callable[[str], str]]


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: Iterable[int] = ()) -> str:
    """Return ``rows`` under ``headers`` in aligned columns; columns in ``right`` align right.

    The cells must already be escaped.
    """
    return "\n".join(stream_table(headers, rows, right=right, chunk=None))


def _widths(rows: Iterable[Sequence[str]], start: Sequence[int]) -> list[int]:
    widths = list(start)
    for row in rows:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]
    return widths


def stream_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Iterable[int] = (),
    chunk: int | None = 100,
    max_width: int | None = None,
    paint: Paint | None = None,
    drop: Sequence[int] = (),
) -> Iterator[str]:
    """Yield the lines of a table of escaped ``rows`` as the rows come.

    Columns are as wide as the widest cell seen so far: the first ``chunk``
    rows (all rows when ``chunk`` is None) are read before the first line, and
    a later, wider cell widens its column from its chunk on. When the first
    chunk makes the table wider than ``max_width``, the columns of ``drop``
    are left out, in that order (the least needed first), until it fits, and a
    last line names them; only when it does not fit even so is each row
    printed as a block of ``header  value`` lines, so that nothing wraps into
    the next column (psql's ``\\x auto``). ``paint`` colours cells (after
    padding; widths are measured on the plain text).
    """
    source = iter(rows)
    first = [list(row) for row in (source if chunk is None else islice(source, chunk))]
    widths = _widths(first, [_width(h) for h in headers])
    if max_width is not None and _table_width(widths) > max_width:
        kept = _columns_that_fit(widths, drop, max_width)
        if kept is None:
            yield from _blocks(headers, first, source, paint or {})
            return
        left_out = [headers[index] for index in range(len(headers)) if index not in kept]
        yield from _table(
            [headers[index] for index in kept],
            [[row[index] for index in kept] for row in first],
            ([row[index] for index in kept] for row in source),
            right={kept.index(index) for index in right if index in kept},
            chunk=chunk,
            paint={kept.index(index): painter for index, painter in (paint or {}).items() if index in kept},
        )
        yield f"(left out to fit {max_width} columns: {', '.join(left_out)}; --format csv has every column)"
        return
    yield from _table(headers, first, source, right=right, chunk=chunk, paint=paint or {})


def _table_width(widths: Sequence[int]) -> int:
    return sum(widths) + 2 * (len(widths) - 1)


def _columns_that_fit(widths: Sequence[int], drop: Sequence[int], max_width: int) -> list[int] | None:
    """Return the columns kept once the fewest of ``drop`` are left out to fit, or ``None``."""
    for count in range(1, len(drop) + 1):
        kept = [index for index in range(len(widths)) if index not in drop[:count]]
        if _table_width([widths[index] for index in kept]) <= max_width:
            return kept
    return None


def _table(
    headers: Sequence[str],
    first: list[list[str]],
    source: Iterator[Sequence[str]],
    *,
    right: Iterable[int],
    chunk: int | None,
    paint: Paint,
) -> Iterator[str]:
    """Yield the lines of an aligned table: ``first`` sets the widths, each later chunk may widen them."""
    right_columns = set(right)
    painters = paint
    widths = [_width(h) for h in headers]

    def line(cells: Sequence[str], colour: bool = True) -> str:
        padded = []
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            gap = " " * (width - _width(cell))
            text = gap + cell if index in right_columns else cell + gap
            painter = painters.get(index) if colour else None
            padded.append(painter(text) if painter else text)
        return "  ".join(padded).rstrip()

    widths = _widths(first, widths)
    yield line(headers, colour=False)
    yield line(["-" * w for w in widths], colour=False)
    block = first
    while block:
        widths = _widths(block, widths)
        for row in block:
            yield line(row)
        block = [] if chunk is None else [list(row) for row in islice(source, chunk)]


def _blocks(
    headers: Sequence[str], first: list[list[str]], rest: Iterator[Sequence[str]], paint: Paint
) -> Iterator[str]:
    """Yield each row as a numbered block of ``header  value`` lines (psql's expanded display)."""
    label_width = max(_width(h) for h in headers)
    for number, row in enumerate(chain(first, rest), start=1):
        yield f"-[ row {number} ]-"
        for index, (header, cell) in enumerate(zip(headers, row, strict=True)):
            painter = paint.get(index)
            value = painter(cell) if painter else cell
            yield f"{header}{' ' * (label_width - _width(header))}  {value}".rstrip()


def format_time(moment: datetime | None) -> str:
    """Return a UTC time to the millisecond, or ``-`` when there is none."""
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Columns:
    """How a listing shows as a table: its headers, right-aligned columns, state column.

    ``drop`` lists the columns a narrow terminal leaves out, the least needed first.
    """

    headers: tuple[str, ...]
    right: frozenset[int]
    state: int | None
    empty: str
    drop: tuple[int, ...] = ()


CELL_COLUMNS = Columns(
    (
        "session",
        "cell",
        "status",
        "last gen",
        "state",
        "kind",
        "obs",
        "retained bytes",
        "last activity (UTC)",
    ),
    frozenset({3, 6, 7}),
    4,
    "(no cells)",
    drop=(8, 7, 6, 2),  # last activity, retained bytes, obs, status
)
SESSION_COLUMNS = Columns(
    ("session", "cells", "open", "obs", "retained bytes", "last activity (UTC)"),
    frozenset({1, 2, 3, 4}),
    None,
    "(no sessions)",
    drop=(5, 4),  # last activity, retained bytes
)
HISTORY_COLUMNS = Columns(
    ("gen", "state", "kind", "bytes", "recorded (UTC)", "released (UTC)", "host"),
    frozenset({0, 3}),
    1,
    "(no observations)",
    drop=(6, 5, 4),  # host, released, recorded
)
HOST_COLUMNS = Columns(
    ("host", "incarnation", "lease ends (UTC)", "status", "pending"),
    frozenset({1, 4}),
    None,
    "(no hosts)",
)


def cell_row(s: CellSummary) -> list[str]:
    """Return the escaped table cells of one cell summary."""
    return [
        escape(s.session_id),
        escape(s.cell_id),
        "closed" if s.closed else "open",
        _number(s.last_generation),
        s.last_state or "-",
        s.last_kind or "-",
        str(s.observations),
        str(s.retained_bytes),
        format_time(s.last_activity),
    ]


def session_row(s: SessionSummary) -> list[str]:
    """Return the escaped table cells of one session summary."""
    return [
        escape(s.session_id),
        str(s.cells),
        str(s.open_cells),
        str(s.observations),
        str(s.retained_bytes),
        format_time(s.last_activity),
    ]


def history_row(o: Observation) -> list[str]:
    """Return the escaped table cells of one observation of a cell's history."""
    return [
        str(o.generation),
        o.state,
        o.kind or "-",
        _number(o.payload_bytes),
        format_time(o.recorded_at),
        format_time(o.released_at),
        "-" if o.host_id is None else escape(o.host_id),
    ]


def host_row(h: HostInfo) -> list[str]:
    """Return the escaped table cells of one host id."""
    return [
        escape(h.host_id),
        str(h.incarnation),
        format_time(h.lease_expires_at),
        "live" if h.live else "lost",
        str(h.pending),
    ]


def cells_table(summaries: Sequence[CellSummary]) -> str:
    """Return the table of ``codemode-store cells``."""
    if not summaries:
        return CELL_COLUMNS.empty
    return format_table(CELL_COLUMNS.headers, map(cell_row, summaries), right=CELL_COLUMNS.right)


def sessions_table(summaries: Sequence[SessionSummary]) -> str:
    """Return the table of ``codemode-store sessions``."""
    if not summaries:
        return SESSION_COLUMNS.empty
    return format_table(SESSION_COLUMNS.headers, map(session_row, summaries), right=SESSION_COLUMNS.right)


def history_table(observations: Sequence[Observation], *, with_cell: bool = False) -> str:
    """Return the table of ``codemode-store history``; ``with_cell`` adds a cell column."""
    if not observations:
        return HISTORY_COLUMNS.empty
    headers: Sequence[str] = HISTORY_COLUMNS.headers
    rows = [history_row(o) for o in observations]
    right: Iterable[int] = HISTORY_COLUMNS.right
    if with_cell:
        rows = [[escape(o.cell_id), *row] for o, row in zip(observations, rows, strict=True)]
        headers = ["cell", *headers]
        right = {index + 1 for index in right}
    return format_table(headers, rows, right=right)


# -- one observation ---------------------------------------------------------------------


def observation_text(observation: Observation) -> str:
    """Return what ``codemode-store show`` prints: the header, then the payload or tombstone."""
    o = observation
    fields = [
        ("session", escape(o.session_id)),
        ("cell", escape(o.cell_id)),
        ("generation", str(o.generation)),
        ("state", _state_words(o)),
        ("kind", o.kind or "-"),
        ("bytes", _number(o.payload_bytes)),
        ("sha256", o.payload_sha256 or "-"),
        ("recorded", format_time(o.recorded_at)),
        ("released", format_time(o.released_at)),
    ]
    label_width = max(len(label) for label, _ in fields)
    lines = [f"{label.ljust(label_width)}  {value}" for label, value in fields]
    lines.append("")
    lines.extend(_body_lines(o))
    return "\n".join(lines)


def _state_words(o: Observation) -> str:
    return {
        "pending": "pending (begun; no result recorded yet)",
        "failed": "failed (replays as its error text until acknowledged)",
        "retained": "retained (replayed until Core acknowledges it)",
        "released": "released (tombstone: the payload was dropped)",
    }[o.state]


def _body_lines(o: Observation) -> list[str]:
    if o.state == "pending":
        return ["(no payload yet)"]
    if o.state == "released":
        return ["(payload released; only the tombstone above remains)"]
    if o.state == "failed":
        return ["error:", _indent(escape(o.error_text or "", keep_layout=True))]
    assert o.outcome is not None
    if o.outcome.kind == "missing":
        return ["(missing: the runtime no longer knows the cell; no content)"]
    items = o.outcome.content_items
    lines = [f"content: {len(items)} item{'' if len(items) == 1 else 's'}"]
    for index, item in enumerate(items, start=1):
        if isinstance(item, TextItem):
            lines.append(f"[{index}] text:")
            lines.append(_indent(escape(item.text, keep_layout=True)))
        else:
            lines.append(f"[{index}] {_image_line(summarise_image(item))}")
    if o.outcome.kind == "completed":
        error = o.outcome.error_text
        lines.append("error_text: " + ("(none)" if error is None else ""))
        if error is not None:
            lines.append(_indent(escape(error, keep_layout=True)))
    return lines


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))


# -- totals and schema -------------------------------------------------------------------


def stats_text(stats: StoreStats) -> str:
    """Return what ``codemode-store stats`` prints: one aligned line per total."""
    revision = stats.schema_revision or "none"
    if stats.schema_revision == stats.head_revision:
        revision += " (head)"
    else:
        revision += f" (head is {stats.head_revision})"
    if stats.file_bytes is None:
        size = "-"
    else:
        size = f"{stats.file_bytes:,} bytes"
        if stats.wal_bytes:
            size += f" (+ {stats.wal_bytes:,} bytes of write-ahead log)"
    lines = [
        ("database", f"{escape(stats.database)} ({stats.backend})"),
        ("schema revision", revision),
        ("sessions", str(stats.sessions)),
        ("cells", str(stats.cells)),
        ("observations", str(stats.observations)),
        ("  retained", str(stats.retained)),
        ("  released", f"{stats.released} (tombstones)"),
        ("  pending", str(stats.pending)),
        ("  failed", str(stats.failed)),
        ("retained bytes", f"{stats.retained_bytes:,}"),
        ("file size", size),
    ]
    if stats.free_pages is not None:
        lines.append(
            ("free pages", f"{stats.free_pages:,} ({stats.reclaimable_bytes or 0:,} bytes reclaimable)")
        )
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def revisions_table(revisions: Sequence[RevisionInfo]) -> str:
    """Return the table of ``codemode-store db history``, newest first."""
    rows = []
    for r in revisions:
        marks = [word for word, on in (("head", r.is_head), ("current", r.is_current)) if on]
        rows.append(
            [
                r.revision,
                r.down_revision or "-",
                ", ".join(marks),
                (r.message.strip().splitlines() or [""])[0],
            ]
        )
    return format_table(["revision", "revises", "status", "description"], rows)
