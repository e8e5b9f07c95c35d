"""The errors of copy, backup, export and import; the CLI prints them like any ``StoreError``."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import StoreError

__all__ = ["BadSessionFile", "PayloadMismatch", "SessionConflict", "UnknownSession"]


class UnknownSession(StoreError, LookupError):
    """The source store holds no such session; check the name (``codemode-store sessions``)."""


class SessionConflict(StoreError):
    """The target already holds sessions that differ from the source's (or, on import, the session)."""

    def __init__(self, detail: str, sessions: Sequence[str]) -> None:
        """Name the sessions that stopped the transfer; nothing was written to the target."""
        self.sessions = tuple(sessions)
        super().__init__(detail, session_id=self.sessions[0] if len(self.sessions) == 1 else None)


class PayloadMismatch(StoreError):
    """A payload read from the source does not match its recorded length or sha256; run ``check``."""


class BadSessionFile(StoreError, ValueError):
    """A session file cannot be imported (other format, newer version, truncated or edited)."""
