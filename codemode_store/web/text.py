"""Payload text for a page: HTML-escaped, control characters shown as marked escapes, long text folded.

Every character a payload or an identifier contributes goes through
:func:`marked`: ``<``, ``&`` and quotes become entities, and each control
character (NUL, escape sequences, bidirectional overrides, ...) becomes its
escape (``\\x00``, ``\\u202e``) inside a ``<span class="ctl">``, so that it
can neither reorder nor hide the text around it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

from ..cli_support.display import CONTROL_CHARACTERS
from ..cli_support.display import escape as escape_controls

__all__ = ["HEAD_CHARS", "HEAD_LINES", "SHOWN_CHARS", "FoldedText", "fold", "marked"]

_IN_TEXT = re.compile(f"[{CONTROL_CHARACTERS}]")
_IN_LINE = re.compile(f"[\t\n{CONTROL_CHARACTERS}]")

#: A text item shows at most this many characters, or lines, before a fold.
HEAD_CHARS = 4_000
HEAD_LINES = 40
#: The fold holds up to this many characters; the whole text is a link away.
SHOWN_CHARS = 256 * 1024


def marked(text: str, *, keep_layout: bool = False) -> Markup:
    """Return ``text`` as safe HTML: entities for markup, a marked escape for each control character.

    ``keep_layout`` keeps newlines and tabs (a text item's body); otherwise
    they are escaped too, so an identifier stays on one line.
    """
    pattern = _IN_TEXT if keep_layout else _IN_LINE
    parts: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        parts.append(str(escape(text[start : match.start()])))
        shown = escape_controls(match.group(), keep_layout=False)
        parts.append(f'<span class="ctl">{escape(shown)}</span>')
        start = match.end()
    parts.append(str(escape(text[start:])))
    return Markup("".join(parts))  # noqa: S704  # every piece was escaped above


@dataclass(frozen=True, slots=True)
class FoldedText:
    """A text item cut for a page: a head shown, a fold, and how much is left out."""

    head: Markup
    fold: Markup | None
    fold_lines: int
    left_out_chars: int
    chars: int
    lines: int


def fold(text: str) -> FoldedText:
    """Cut ``text`` into a visible head, a fold of up to ``SHOWN_CHARS``, and the rest left out."""
    lines = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    head_end = min(len(text), HEAD_CHARS)
    newline = -1
    for _ in range(HEAD_LINES):
        newline = text.find("\n", newline + 1, head_end)
        if newline < 0:
            break
    else:
        head_end = newline + 1
    shown_end = min(len(text), SHOWN_CHARS)
    folded = text[head_end:shown_end]
    return FoldedText(
        head=marked(text[:head_end], keep_layout=True),
        fold=marked(folded, keep_layout=True) if folded else None,
        fold_lines=folded.count("\n") + (0 if folded.endswith("\n") else 1) if folded else 0,
        left_out_chars=len(text) - max(shown_end, head_end),
        chars=len(text),
        lines=lines,
    )
