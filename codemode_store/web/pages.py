"""What each page shows, read through the CLI's listings: one page of rows, and where the next starts.

Pages are keyset-paginated: a page asks the listing for ``limit + 1`` rows
after the last key of the page before (``after=``), in index order, so any
page costs the same however large the store, and no page counts the whole
store. Each page also names the CLI command that shows the same rows.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..cli_support import inspection
from ..cli_support.display import escape
from ..errors import InvalidInput
from ..hosts import HostInfo
from ..observation import CellSummary, Observation
from ..store import ObservationStore
from ..wire import ImageItem, TextItem
from .images import PageImage, page_image
from .queries import begun_and_requests
from .text import FoldedText, fold

__all__ = [
    "ITEMS_PER_PAGE",
    "MAX_ROWS",
    "ROWS_PER_PAGE",
    "Command",
    "ItemView",
    "Listing",
    "ObservationView",
    "TimelineEntry",
    "cells_page",
    "history_page",
    "hosts_page",
    "observation_view",
    "sessions_page",
]

ROWS_PER_PAGE = 50
MAX_ROWS = 500
#: Content items shown per page of one observation (10,000 images come 50 at a time).
ITEMS_PER_PAGE = 50
#: Host ids shown on the sessions page (a store has a few host slots; the JSON twin takes ``limit``).
HOSTS_SHOWN = 20

T = TypeVar("T")
Params = dict[str, str]


@dataclass(frozen=True, slots=True)
class Command:
    """A CLI command line: the words, quoted for a shell when shown."""

    words: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(escape(shlex.quote(word)) for word in self.words)


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page of a listing: its rows and the query parameters of the next page (``None``: last)."""

    rows: list[T]
    next_params: Params | None


def _page(found: Iterator[T], limit: int, key: Callable[[T], Params]) -> Listing[T]:
    rows = list(found)  # the listing was asked for limit + 1 rows at most
    more = len(rows) > limit
    rows = rows[:limit]
    return Listing(rows, key(rows[-1]) if more and rows else None)


def sessions_page(
    store: ObservationStore, *, after: str | None, limit: int
) -> Listing[inspection.SessionSummary]:
    """Return a page of sessions after the session id ``after``."""
    found = inspection.iter_sessions(store, limit=limit + 1, after=after)
    return _page(found, limit, lambda s: {"after": s.session_id})


def hosts_page(store: ObservationStore, *, limit: int) -> Listing[HostInfo]:
    """Return the first ``limit`` host ids, in order; ``next_params`` is set when there are more."""
    found = inspection.iter_hosts(store, limit=limit + 1)
    return _page(found, limit, lambda h: {"limit": str(MAX_ROWS)})


def cells_page(
    store: ObservationStore,
    *,
    session_id: str | None,
    state: str | None,
    closed: bool | None,
    after: tuple[str, str] | None,
    limit: int,
) -> Listing[CellSummary]:
    """Return a page of cells (of one session, or all) after the (session, cell) ``after``."""
    found = inspection.iter_cells(
        store,
        session_id=session_id,
        state=state,  # type: ignore[arg-type]  # checked by iter_cells
        closed=closed,
        limit=limit + 1,
        after=after,
    )
    return _page(found, limit, lambda c: {"after_session": c.session_id, "after_cell": c.cell_id})


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One generation on a cell's timeline: the history row, when it began, its request."""

    observation: Observation
    begun_at: datetime | None
    request: str | None
    error: FoldedText | None


def history_page(
    store: ObservationStore, session_id: str, cell_id: str, *, after: int | None, limit: int
) -> Listing[TimelineEntry]:
    """Return a page of a cell's generations after generation ``after``."""
    found = list(inspection.iter_history(store, session_id, cell_id, limit=limit + 1, after=after))
    extra: dict[int, tuple[datetime | None, str | None]] = {}
    if found:
        extra = begun_and_requests(store, session_id, cell_id, found[0].generation, found[-1].generation)
    entries = iter(
        TimelineEntry(
            o,
            *extra.get(o.generation, (None, None)),
            error=None if o.error_text is None else fold(o.error_text),
        )
        for o in found
    )
    return _page(entries, limit, lambda e: {"after": str(e.observation.generation)})


@dataclass(frozen=True, slots=True)
class ItemView:
    """One content item as a page shows it: folded text, or an image drawn or described."""

    number: int
    text: FoldedText | None
    image: PageImage | None


@dataclass(frozen=True, slots=True)
class ObservationView:
    """One observation for its page: the row, a page of its items, its error text folded."""

    observation: Observation
    items: list[ItemView]
    item_count: int
    start: int
    next_start: int | None
    error: FoldedText | None


def observation_view(
    store: ObservationStore, session_id: str, cell_id: str, generation: int | None, *, start: int = 0
) -> ObservationView:
    """Return one observation (the cell's last when ``generation`` is None) with items from ``start``."""
    found = inspection.observation(store, session_id, cell_id, generation)
    items = found.outcome.content_items if found.outcome is not None else ()
    shown = []
    for number, item in enumerate(items[start : start + ITEMS_PER_PAGE], start=start + 1):
        if isinstance(item, TextItem):
            shown.append(ItemView(number, fold(item.text), None))
        else:
            assert isinstance(item, ImageItem)
            shown.append(ItemView(number, None, page_image(item)))
    error_text = found.error_text if found.outcome is None else found.outcome.error_text
    end = start + ITEMS_PER_PAGE
    return ObservationView(
        observation=found,
        items=shown,
        item_count=len(items),
        start=start,
        next_start=end if end < len(items) else None,
        error=None if error_text is None else fold(error_text),
    )


def record_with_outcome(found: Observation) -> dict[str, Any]:
    """Return the JSON twin of an observation page: its history record and its wire outcome (or null)."""
    value = inspection.record(found)
    value["outcome"] = None if found.outcome is None else found.outcome.to_wire(found.cell_id)
    return value


# -- query parameters ---------------------------------------------------------------------


def text_param(query: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """Return a query parameter (``None`` when absent or empty); ``InvalidInput`` if required and missing."""
    value = query.get(name) or None
    if value is None and required:
        raise InvalidInput(f"the page needs the query parameter {name!r}")
    return value


def cell_params(query: Mapping[str, str]) -> tuple[str, str]:
    """Return the ``session`` and ``cell`` parameters a cell's page needs (``InvalidInput`` if missing)."""
    session_id = text_param(query, "session", required=True)
    cell_id = text_param(query, "cell", required=True)
    assert session_id is not None and cell_id is not None
    return session_id, cell_id


def number_param(query: Mapping[str, str], name: str, *, low: int = 0, high: int = 2**63 - 1) -> int | None:
    """Return a whole-number query parameter in ``[low, high]``, or ``None`` when absent."""
    value = text_param(query, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def limit_param(query: Mapping[str, str]) -> int:
    """Return the rows per page asked for (``limit``), ``ROWS_PER_PAGE`` by default."""
    return number_param(query, "limit", low=1, high=MAX_ROWS) or ROWS_PER_PAGE
