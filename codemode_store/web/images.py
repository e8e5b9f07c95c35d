"""Which image items a page may draw, and how: only data URLs of PNG, JPEG, GIF and WebP.

An image item's URL is untrusted text. It reaches a page's ``<img src>`` only
when it is a base64 ``data:`` URL of one of four raster types whose bytes
start as that type does; the page then gets a URL rebuilt from the decoded
bytes, never the stored text. SVG (which may carry scripts), any other media
type, a link to elsewhere and undecodable data are described, not drawn.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from ..cli_support.display import summarise_image
from ..wire import ImageItem

__all__ = ["DRAWN_TYPES", "PageImage", "page_image"]

#: The names of the drawn types, for messages.
_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}

#: Media types drawn inline, with the bytes their data must start with.
DRAWN_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True, slots=True)
class PageImage:
    """An image item as a page shows it.

    ``src`` is a data URL rebuilt from the decoded bytes when the image may be
    drawn, else ``None`` and ``problem`` says why. ``width`` and ``height``
    come from the image's header when it could be read.
    """

    media_type: str | None
    decoded_bytes: int | None
    detail: str | None
    src: str | None
    problem: str | None
    width: int | None = None
    height: int | None = None
    url: str | None = None


def page_image(item: ImageItem) -> PageImage:
    """Return how a page shows ``item``: drawn (a rebuilt data URL) or described."""
    summary = summarise_image(item)
    if summary.url is not None:
        return PageImage(
            None,
            None,
            item.detail,
            None,
            "not drawn: a link, and the page loads nothing from elsewhere",
            url=summary.url,
        )
    if summary.problem is not None:
        return PageImage(summary.media_type, None, item.detail, None, f"not drawn: {summary.problem}")
    media = (summary.media_type or "").lower()
    header, _comma, data = item.image_url[5:].partition(",")
    if media not in DRAWN_TYPES:
        return PageImage(
            summary.media_type,
            summary.decoded_bytes,
            item.detail,
            None,
            "not drawn: only PNG, JPEG, GIF and WebP images are drawn",
        )
    if not header.lower().endswith(";base64") or _BASE64.fullmatch(data) is None:
        return PageImage(
            summary.media_type, summary.decoded_bytes, item.detail, None, "not drawn: not base64 data"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return PageImage(summary.media_type, None, item.detail, None, "not drawn: invalid base64 data")
    if not raw.startswith(DRAWN_TYPES[media]) or (media == "image/webp" and raw[8:12] != b"WEBP"):
        return PageImage(
            media, len(raw), item.detail, None, f"not drawn: the data is not a {_NAMES[media]} image"
        )
    width, height = _size(media, raw) or (None, None)
    src = f"data:{media};base64,{base64.b64encode(raw).decode('ascii')}"
    return PageImage(media, len(raw), item.detail, src, None, width, height)


def _size(media: str, raw: bytes) -> tuple[int, int] | None:
    """Return (width, height) from an image's header, or ``None`` when it cannot be read."""
    try:
        if media == "image/png" and raw[12:16] == b"IHDR":
            return struct.unpack(">II", raw[16:24])
        if media == "image/gif":
            return struct.unpack("<HH", raw[6:10])
        if media == "image/webp":
            return _webp_size(raw)
        if media == "image/jpeg":
            return _jpeg_size(raw)
    except struct.error:
        return None
    return None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    chunk = raw[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(raw[24:27], "little") + 1
        height = int.from_bytes(raw[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


#: JPEG start-of-frame markers (baseline, progressive, ...), which carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(raw):
        if raw[index] != 0xFF:
            return None
        marker = raw[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        (length,) = struct.unpack(">H", raw[index + 2 : index + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", raw[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None
