"""The one rule that turns the store's values into JSON objects.

A value's JSON object is its named attributes, in the order given: times as
ISO 8601 (UTC), tuples as lists, and values that have their own ``to_json``
through it. The reports of gc, check and vacuum declare their keys in their
``to_json``; the listings of the CLI in ``cli_support.inspection.RECORD_KEYS``;
both render through :func:`json_object`, so their JSON follows one convention.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

__all__ = ["json_object", "json_value"]


def json_value(value: Any) -> Any:
    """Return ``value`` as JSON-able: a time in ISO 8601, a tuple as a list, a report by its ``to_json``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [json_value(item) for item in value]
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return value


def json_object(value: object, keys: Iterable[str], **shown: Any) -> dict[str, Any]:
    """Return the JSON object of ``value``: its attributes ``keys``, in order; ``shown`` replaces some."""
    return {key: shown[key] if key in shown else json_value(getattr(value, key)) for key in keys}
