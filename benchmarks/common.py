"""Measuring helpers: alternating rounds, medians, percentiles, payload builders.

These machines are shared and noisy, so a figure is never a time on its own: it
is a ratio against a baseline measured in the same run, with the variants run
in alternating order round after round and the median of the rounds kept.
"""

from __future__ import annotations

import base64
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from codemode_store import ImageItem, Outcome, TextItem

__all__ = [
    "Rounds",
    "Row",
    "alternate",
    "image_outcome",
    "percentile",
    "ratio",
    "table_row",
    "text_outcome",
]

#: Per variant, the seconds each round took.
Rounds = dict[str, list[float]]

#: One row of the results table (``benchmarks.run`` prints and writes them).
Row = dict[str, Any]


def alternate(
    variants: dict[str, Callable[[], object]], rounds: int, between: Callable[[], object] | None = None
) -> Rounds:
    """Run every variant once per round, rotating the order; return each one's round times.

    ``between`` runs untimed after every round.
    """
    names = list(variants)
    times: Rounds = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
        if between is not None:
            between()
    return times


def median(values: Sequence[float]) -> float:
    """Return the median of ``values``."""
    return float(statistics.median(values))


def ratio(value: float, baseline: float) -> float:
    """Return ``value / baseline`` rounded for a table (inf when the baseline is 0)."""
    return round(value / baseline, 2) if baseline > 0 else float("inf")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` percentile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def text_outcome(size: int, kind: str = "yielded") -> Outcome:
    """Return an outcome of one text item of ``size`` ASCII characters."""
    text = ("0123456789abcdef" * (size // 16 + 1))[:size]
    if kind == "completed":
        return Outcome.completed([TextItem(text)])
    return Outcome.yielded([TextItem(text)])


def image_outcome(size: int) -> Outcome:
    """Return a completed outcome of one PNG data URL of about ``size`` bytes."""
    raw = os.urandom(size * 3 // 4)
    url = "data:image/png;base64," + base64.b64encode(raw).decode("ascii")
    return Outcome.completed([ImageItem(url, "auto")])


def table_row(
    workload: str,
    measure: str,
    store: Any,
    baseline: str,
    value: Any,
    figure: float | None,
    target: str,
    meets: bool | None,
) -> Row:
    """Return one row of the results table: a figure of the store against its baseline."""
    return {
        "workload": workload,
        "measure": measure,
        "store": store,
        "baseline": baseline,
        "baseline_value": value,
        "ratio": figure,
        "target": target,
        "meets": meets,
    }
