"""A hostile corpus for the web page: payloads and ids that would run script if printed raw.

Every script here sets ``window.__pwned`` (the canary the browser tests read)
or the page title. :func:`hostile_store` writes each case as one cell of
session ``hostile`` (``CASES``), plus a session and a cell whose very ids are
hostile (``HOSTILE_SESSION``, ``HOSTILE_CELL``).
"""

from __future__ import annotations

import base64
from pathlib import Path

from codemode_store import ImageItem, ObservationStore, Outcome, TextItem
from codemode_store.cli_support.demo import chart_outcome

SESSION = "hostile"
CANARY = "window.__pwned = 1"
SCRIPT = f"<script>{CANARY}</script>"
HOSTILE_SESSION = f"{SCRIPT}\u202esession"
HOSTILE_CELL = f'"><img src=x onerror="{CANARY}">\u2066cell'
HOSTILE_HOST = f"{SCRIPT}\u202ehost"
#: The session whose generation a host with the hostile id began (and left pending).
HOSTED = "hosted"
TEXT_MIB = 64
IMAGES = 10_000

_SVG = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{CANARY}"><script>{CANARY}</script></svg>'
_HTML = f"<html><body>{SCRIPT}</body></html>"


def _data_url(media: str, data: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"


def _png() -> str:
    item = chart_outcome().content_items[1]
    assert isinstance(item, ImageItem)
    return item.image_url


def _big_text() -> str:
    line = f'{SCRIPT} <b onmouseover="{CANARY}">line</b> &amp; more\n'
    return (line * (TEXT_MIB * 1024 * 1024 // len(line) + 1))[: TEXT_MIB * 1024 * 1024]


#: Each hostile case: the cell id and its outcome, and the markup that must never appear raw.
CASES: dict[str, tuple[Outcome, tuple[str, ...]]] = {
    "script-tag": (Outcome.completed([TextItem(SCRIPT)], error_text=SCRIPT), (SCRIPT,)),
    "textarea-end": (
        Outcome.completed([TextItem(f"</textarea></pre></details>{SCRIPT}")]),
        ("</textarea>", SCRIPT),
    ),
    "event-attributes": (
        Outcome.yielded([TextItem(f'<img src=x onerror="{CANARY}"> " onmouseover="{CANARY}" x="')]),
        ('<img src=x onerror="', '" onmouseover="'),
    ),
    "javascript-url": (
        Outcome.completed(
            [TextItem(f'<a href="javascript:{CANARY}">click</a>'), ImageItem(f"javascript:{CANARY}", "high")]
        ),
        ('<a href="javascript:', 'src="javascript:'),
    ),
    "svg-with-script": (
        Outcome.completed([TextItem(_SVG), ImageItem(_data_url("image/svg+xml", _SVG.encode()), "auto")]),
        ("<svg", 'src="data:image/svg'),
    ),
    "not-a-raster-data-url": (
        Outcome.completed(
            [
                ImageItem(_data_url("text/html", _HTML.encode())),
                ImageItem(_data_url("image/png", _HTML.encode()), "low"),  # says PNG, holds HTML
                ImageItem("data:image/png," + SCRIPT),  # not base64
                ImageItem("https://example.invalid/tracker.png"),
                ImageItem(f'data:image/png;base64,AAAA" onerror="{CANARY}'),
            ]
        ),
        ('src="data:text/html', "<html>", 'src="https://', '" onerror="'),
    ),
    "nul-and-bidi": (
        Outcome.completed(
            [TextItem(f"a\x00b \u202eevil\u202c \u2066iso\u2069 \x1b[31mred\x1b[0m \x07 {SCRIPT}\r\n")],
            error_text="err\x00\u202e",
        ),
        ("\x00", "\u202e", "\u2066", "\x1b", SCRIPT),
    ),
}

#: The two heavy cases, built only by ``hostile_store(heavy=True)``.
HEAVY = ("64-mib-text", "10000-images")


def hostile_store(path: Path, *, heavy: bool = True) -> Path:
    """Write the hostile corpus (and, with ``heavy``, 64 MiB of text and 10,000 images) at ``path``."""
    with ObservationStore.open(path, max_payload_bytes=(TEXT_MIB + 16) * 1024 * 1024) as store:
        s = store.session(SESSION)
        for cell, (outcome, _raw) in CASES.items():
            s.create_cell(cell)
            s.begin(cell, 0, {"note": SCRIPT})
            s.record(cell, 0, outcome)
        s.create_cell("failed")
        s.begin("failed", 0)
        s.fail("failed", 0, f"Traceback: {SCRIPT}\x00\u202e")
        if heavy:
            s.create_cell("64-mib-text")
            s.begin("64-mib-text", 0)
            s.record("64-mib-text", 0, Outcome.completed([TextItem(_big_text())]))
            png = _png()
            s.create_cell("10000-images")
            s.begin("10000-images", 0)
            s.record("10000-images", 0, Outcome.completed([ImageItem(png, "low")] * IMAGES))
        odd = store.session(HOSTILE_SESSION)
        odd.create_cell(HOSTILE_CELL)
        odd.begin(HOSTILE_CELL, 0, {"q": SCRIPT})
        odd.record(HOSTILE_CELL, 0, Outcome.yielded([TextItem(SCRIPT)]))
    with ObservationStore.open(path, host_id=HOSTILE_HOST) as host:
        hosted = host.session(HOSTED)
        hosted.create_cell("c")
        hosted.begin("c", 0)  # left pending under the hostile host id
    return path
