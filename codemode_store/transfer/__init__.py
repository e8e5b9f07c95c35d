"""Move what a store holds: copy between stores, back up, export and import one session.

- :func:`copy_to` / :func:`copy_sessions`: sessions, every row as it is, from a
  consistent snapshot of one store into another of either backend (``copying``).
- :func:`backup`: a consistent, checked copy into a new SQLite file (``backup``).
- :func:`export_session` / :func:`import_session`: one session as JSON lines
  with a versioned header (``session_file``).

What moves is derived from ``codemode_store.schema`` (``tables``), so columns
and tables of later revisions come along. The library's front end is
``codemode-store copy``, ``backup``, ``export`` and ``import``.
"""

from __future__ import annotations

from .backup import BackupReport, backup
from .copying import (
    TRANSFER_CALL_TIMEOUT,
    CopyProgress,
    CopyReport,
    CopyState,
    copy_sessions,
    copy_to,
    same_database,
)
from .errors import BadSessionFile, PayloadMismatch, SessionConflict, UnknownSession
from .session_file import (
    FORMAT,
    FORMAT_VERSION,
    SessionFileReport,
    check_session_file,
    export_session,
    import_session,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TRANSFER_CALL_TIMEOUT",
    "BackupReport",
    "BadSessionFile",
    "CopyProgress",
    "CopyReport",
    "CopyState",
    "PayloadMismatch",
    "SessionConflict",
    "SessionFileReport",
    "UnknownSession",
    "backup",
    "check_session_file",
    "copy_sessions",
    "copy_to",
    "export_session",
    "import_session",
    "same_database",
]
