"""The web page's first pages do not grow with the store: 10^6 observations against 10^3.

Run ``python -m benchmarks.web_pages [--rounds N] [--rows N] [--folder DIR]``
(the web extra installed). Two ``codemode-store serve`` processes serve a
store of 10^3 observations and one of ``--rows`` (10^6 by default), both of
sessions alike (one cell a session, ten generations a cell: 100 sessions
against 100,000), so that a page shows the same rows of the same size in
both. Two more serve ``--rows`` observations in other shapes: the replay
benchmark's (100 cells a session) and every cell in one session. Each
page is fetched over HTTP from each server, the variants alternating round
after round (each round keeps the best of three fetches: a page takes a few
milliseconds, and one fetch is at the mercy of the scheduler); the figure
is the median over rounds of the large store's time over the small one's in
the same round. Keyset pages read ``limit + 1`` rows from the index at the
page's key, so the ratio stays near 1 however large the store.

A sessions page sums each session's observations (the CLI's ``sessions``
listing: counts, retained bytes, last activity), so its cost follows the size
of the sessions on the page, never the number of sessions in the store: the
other two shapes show it (a page of 50 sessions of 1,000 observations, and
one session of 10^6). Reported, not hidden.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import replay
from benchmarks.cli_startup import SMALL_ROWS
from benchmarks.common import alternate, median
from scripts.screenshot import Server

#: The pages timed: name, path. ``session-0`` and ``cell-0`` exist in every layout.
PAGES = {
    "sessions": "/",
    "cells, every session": "/cells",
    "cells of one session": "/cells?session=session-0",
    "cells, retained only": "/cells?state=retained",
    "history of one cell": "/history?session=session-0&cell=cell-0",
    "one observation": "/observation?session=session-0&cell=cell-0",
    "sessions (JSON)": "/sessions.json",
}


def _fetcher(server: Server, path: str) -> Callable[[], None]:
    address = urlsplit(server.base)

    def fetch() -> None:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=300)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
            if response.status != 200 or not body:
                raise RuntimeError(f"{path}: HTTP {response.status}")
            best = min(best, time.perf_counter() - start)
        fetch.best.append(best)  # type: ignore[attr-defined]

    fetch.best = []  # type: ignore[attr-defined]
    return fetch


def store(folder: Path, rows: int, cells_per_session: int) -> Path:
    """Return a store of ``rows`` observations: ten generations a cell, ``cells_per_session`` a session."""
    path = folder / f"web-{rows}-{cells_per_session}.db"
    if path.exists():
        return path
    kept = replay.CELLS_PER_SESSION
    replay.CELLS_PER_SESSION = cells_per_session
    try:
        replay.build(path, rows)
    finally:
        replay.CELLS_PER_SESSION = kept
    return path


#: The shapes compared with the small store: (name, cells a session).
SHAPES = (("large", 1), ("large_100_cells_a_session", 100), ("large_one_session", 10**9))


def measure(folder: Path, rounds: int, rows: int) -> dict[str, Any]:
    """Return the median ms of each page per store, and each large store's ratio to the small one."""
    stores = {"small": store(folder, SMALL_ROWS, 1)}
    stores.update({name: store(folder, rows, cells) for name, cells in SHAPES})
    servers = {name: Server(path) for name, path in stores.items()}
    try:
        fetchers = {
            (page, name): _fetcher(server, path)
            for page, path in PAGES.items()
            for name, server in servers.items()
        }
        for fetch in fetchers.values():  # untimed: warms the file cache and the server
            fetch()
            fetch.best.clear()  # type: ignore[attr-defined]
        alternate({f"{page} | {name}": fetch for (page, name), fetch in fetchers.items()}, rounds)
    finally:
        for server in servers.values():
            server.stop()
    best = {key: fetch.best for key, fetch in fetchers.items()}  # type: ignore[attr-defined]
    result: dict[str, Any] = {"rows": rows, "small_rows": SMALL_ROWS, "rounds": rounds, "pages": {}}
    for page in PAGES:
        small = best[(page, "small")]
        entry = {name: round(median(best[(page, name)]) * 1000, 2) for name in stores}
        for name, _cells in SHAPES:
            paired = [a / b for a, b in zip(best[(page, name)], small, strict=True)]
            entry[f"{name} / small"] = round(median(paired), 2)
        result["pages"][page] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, default=1_000_000, help="observations of the large stores")
    parser.add_argument("--folder", type=Path, help="keep the stores here (built once, reused)")
    args = parser.parse_args(argv)
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(measure(args.folder, args.rounds, args.rows), indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), args.rounds, args.rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
