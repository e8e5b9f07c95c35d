"""The wire model of the code-mode protocol: content items and outcomes.

``Outcome.from_wire`` and ``Outcome.to_wire`` convert exactly the shapes of
docs/protocol.md ("The wire shapes"); ``encode_payload`` and ``decode_payload`` turn an outcome into the bytes
the store keeps (canonical JSON, UTF-8) and back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

from .errors import InvalidInput
from .validation import canonical_json, check_identifier, is_encodable

__all__ = [
    "IMAGE_DETAILS",
    "OUTCOME_KINDS",
    "ContentItem",
    "ImageItem",
    "Outcome",
    "OutcomeKind",
    "TextItem",
    "decode_payload",
    "encode_payload",
]

OutcomeKind: TypeAlias = Literal["yielded", "completed", "terminated", "missing"]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = ("yielded", "completed", "terminated", "missing")
CLOSING_KINDS: frozenset[str] = frozenset({"completed", "terminated"})
IMAGE_DETAILS: tuple[str, ...] = ("auto", "low", "high", "original")


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(reason)


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a string, not {type(value).__name__}")
    # ASCII text (every base64 data URL) holds no lone surrogate: skipping the
    # encode check spares a large payload one more full copy.
    if not value.isascii() and not is_encodable(value):
        raise _invalid(f"{what} is not valid Unicode text (lone surrogate)")
    return str(value)


@dataclass(frozen=True, slots=True)
class TextItem:
    """A text content item: ``{"type": "input_text", "text": ...}``."""

    text: str

    def __post_init__(self) -> None:
        _check_text(self.text, "input_text text")

    def to_wire(self) -> dict[str, Any]:
        """Return the wire shape of this item."""
        return {"type": "input_text", "text": self.text}


@dataclass(frozen=True, slots=True)
class ImageItem:
    """An image content item: a (usually ``data:``) URL and an optional detail."""

    image_url: str
    detail: str | None = None

    def __post_init__(self) -> None:
        _check_text(self.image_url, "input_image image_url")
        if self.detail is not None and self.detail not in IMAGE_DETAILS:
            raise _invalid(
                f"input_image detail must be one of {', '.join(IMAGE_DETAILS)}, not {self.detail!r}"
            )

    def to_wire(self) -> dict[str, Any]:
        """Return the wire shape of this item (no ``detail`` key when there is none)."""
        item: dict[str, Any] = {"type": "input_image", "image_url": self.image_url}
        if self.detail is not None:
            item["detail"] = self.detail
        return item


ContentItem: TypeAlias = TextItem | ImageItem

_ITEM_KEYS = {
    "input_text": (frozenset({"type", "text"}), frozenset({"type", "text"})),
    "input_image": (frozenset({"type", "image_url"}), frozenset({"type", "image_url", "detail"})),
}


def _item_from_wire(value: object, index: int) -> ContentItem:
    where = f"content_items[{index}]"
    if not isinstance(value, Mapping):
        raise _invalid(f"{where} must be an object, not {type(value).__name__}")
    item_type = value.get("type")
    if not isinstance(item_type, str) or item_type not in _ITEM_KEYS:
        raise _invalid(f"{where} has unknown type {item_type!r}")
    required, allowed = _ITEM_KEYS[item_type]
    _check_keys(value, required, allowed, where)
    if item_type == "input_text":
        return TextItem(_check_text(value["text"], f"{where} text"))
    detail = value.get("detail")
    if detail is not None and not isinstance(detail, str):
        raise _invalid(f"{where} detail must be a string, not {type(detail).__name__}")
    return ImageItem(_check_text(value["image_url"], f"{where} image_url"), detail)


def _check_keys(
    value: Mapping[Any, Any], required: frozenset[str], allowed: frozenset[str], where: str
) -> None:
    keys = set(value.keys())
    unknown = keys - allowed
    if unknown:
        names = ", ".join(sorted(repr(k) for k in unknown))
        raise _invalid(f"{where} has unknown keys {names}")
    absent = required - keys
    if absent:
        raise _invalid(f"{where} lacks {', '.join(sorted(absent))}")


def _items(items: Iterable[ContentItem]) -> tuple[ContentItem, ...]:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise _invalid(f"content_items must be a list of items, not {type(items).__name__}")
    result = tuple(items)
    for index, item in enumerate(result):
        if not isinstance(item, (TextItem, ImageItem)):
            raise _invalid(
                f"content_items[{index}] must be a TextItem or ImageItem, not {type(item).__name__}"
            )
    return result


_OUTCOME_KEYS = {
    "yielded": (frozenset({"type", "cell_id", "content_items"}),) * 2,
    "terminated": (frozenset({"type", "cell_id", "content_items"}),) * 2,
    "completed": (
        frozenset({"type", "cell_id", "content_items"}),
        frozenset({"type", "cell_id", "content_items", "error_text"}),
    ),
    "missing": (frozenset({"type", "cell_id"}),) * 2,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What Core receives for one observation; build it with the class methods."""

    kind: OutcomeKind
    content_items: tuple[ContentItem, ...] = ()
    error_text: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTCOME_KINDS:
            raise _invalid(f"outcome type must be one of {', '.join(OUTCOME_KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "content_items", _items(self.content_items))
        if self.kind == "missing" and self.content_items:
            raise _invalid("a missing outcome carries no content_items")
        if self.error_text is not None:
            if self.kind != "completed":
                raise _invalid(f"only a completed outcome carries error_text, not {self.kind}")
            _check_text(self.error_text, "error_text")
            if self.error_text == "":
                object.__setattr__(self, "error_text", None)

    @classmethod
    def yielded(cls, items: Iterable[ContentItem]) -> Outcome:
        """Return a ``yielded`` outcome: the cell is still running."""
        return cls("yielded", _items(items))

    @classmethod
    def completed(cls, items: Iterable[ContentItem], error_text: str | None = None) -> Outcome:
        """Return a ``completed`` outcome; an empty ``error_text`` becomes ``None``."""
        return cls("completed", _items(items), error_text)

    @classmethod
    def terminated(cls, items: Iterable[ContentItem]) -> Outcome:
        """Return a ``terminated`` outcome: the cell was stopped."""
        return cls("terminated", _items(items))

    @classmethod
    def missing(cls) -> Outcome:
        """Return a ``missing`` outcome: the runtime no longer knows the cell."""
        return cls("missing")

    @property
    def closes_cell(self) -> bool:
        """Tell whether recording this outcome closes its cell."""
        return self.kind in CLOSING_KINDS

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Outcome:
        """Return the outcome of a wire object (docs/protocol.md); ``InvalidInput`` if malformed.

        The ``cell_id`` is checked but not kept: see :meth:`wire_cell_id`.
        """
        cls.wire_cell_id(wire)
        kind = wire["type"]
        content = wire.get("content_items", [])
        if not isinstance(content, list):
            raise _invalid(f"content_items must be a list, not {type(content).__name__}")
        items = tuple(_item_from_wire(item, index) for index, item in enumerate(content))
        error_text = wire.get("error_text")
        if error_text is not None:
            error_text = _check_text(error_text, "error_text")
        return cls(kind, items, error_text)

    @staticmethod
    def wire_cell_id(wire: Mapping[str, Any]) -> str:
        """Check the outer shape of a wire outcome and return its ``cell_id``."""
        if not isinstance(wire, Mapping):
            raise _invalid(f"an outcome must be an object, not {type(wire).__name__}")
        kind = wire.get("type")
        if not isinstance(kind, str) or kind not in _OUTCOME_KEYS:
            raise _invalid(f"outcome has unknown type {kind!r}")
        required, allowed = _OUTCOME_KEYS[kind]
        _check_keys(wire, required, allowed, f"{kind} outcome")
        return check_identifier(wire["cell_id"], "cell_id")

    def to_wire(self, cell_id: str) -> dict[str, Any]:
        """Return the wire object of this outcome for ``cell_id`` (docs/protocol.md)."""
        return {"type": self.kind, "cell_id": check_identifier(cell_id, "cell_id"), **self._body()}

    def _body(self) -> dict[str, Any]:
        """Return the wire object without its ``type`` and ``cell_id``."""
        if self.kind == "missing":
            return {}
        body: dict[str, Any] = {"content_items": [item.to_wire() for item in self.content_items]}
        if self.kind == "completed":
            body["error_text"] = self.error_text
        return body


def encode_payload(outcome: Outcome) -> bytes:
    """Return the stored bytes of ``outcome``: canonical JSON of its wire body (no ``cell_id``)."""
    return canonical_json({"type": outcome.kind, **outcome._body()}).encode("utf-8")


def decode_payload(payload: bytes | str) -> Outcome:
    """Return the outcome stored as ``payload`` by :func:`encode_payload` (its bytes or their text)."""
    body = json.loads(payload)
    kind = body["type"]
    items: list[ContentItem] = []
    for item in body.get("content_items", ()):
        if item["type"] == "input_text":
            items.append(TextItem(item["text"]))
        else:
            items.append(ImageItem(item["image_url"], item.get("detail")))
    return Outcome(cast(OutcomeKind, kind), tuple(items), body.get("error_text"))
