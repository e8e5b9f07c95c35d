"""The progress callback that the long operations gc, check and vacuum accept."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress"]

#: Called as ``progress(done, total)`` while a long operation runs.
Progress = Callable[[int, int], None]
