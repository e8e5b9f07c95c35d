"""Back a store up into a new SQLite file, consistently, while hosts keep writing.

A SQLite store is copied page by page with SQLite's online backup API in one
step: the step reads the source inside one read transaction, so the copy is
the file as it was at one commit, and in WAL mode that read blocks no writer.
(In several steps, a commit of a host between two steps would restart the
backup, perhaps forever on a busy store.) ``VACUUM INTO`` would also give a
consistent copy, packed, but it writes its output without syncing it and with
the process's default file mode; the backup API writes through an ordinary
connection that syncs its commit, into the 0600 file made here.

A PostgreSQL store is copied session by session (``copying``) into a new
SQLite store, from one ``REPEATABLE READ`` snapshot. Either way the new file
is checked (``integrity.check``: SQLite's quick check and every payload
re-hashed) before the backup reports success; a backup that fails leaves no
file behind.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, StoreError
from ..integrity import CheckReport
from ..jsonable import json_object
from ..progress import Progress
from ..store import ObservationStore
from ..translate import errors_of_database
from .copying import CopyProgress, copy_sessions, shown
from .snapshot import naming

__all__ = ["BackupReport", "backup"]


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What a backup wrote, how, how long it took (the copy, then its check), and what the check found."""

    destination: str
    method: str
    file_bytes: int
    seconds: float
    copy_seconds: float
    check_seconds: float
    check: CheckReport

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        keys = ("destination", "method", "file_bytes", "seconds", "copy_seconds", "check_seconds", "check")
        return json_object(self, keys)


def backup(
    source: ObservationStore,
    destination: str | os.PathLike[str],
    *,
    progress: CopyProgress | None = None,
    check_progress: Progress | None = None,
) -> BackupReport:
    """Copy ``source`` into the new SQLite file ``destination`` (0600), check it, and report.

    ``destination`` must not exist and its folder must: ``InvalidInput``
    otherwise. ``progress`` follows the copy of a PostgreSQL store,
    ``check_progress`` the check of the new file.
    """
    path = Path(os.fspath(destination))
    started = time.monotonic()
    _create(path)
    try:
        if source.engine.dialect.name == "sqlite":
            method = "sqlite online backup"
            _page_copy(source, path)
        else:
            method = "copy of every session"
            with ObservationStore.open(path) as target:
                copy_sessions(source, target, progress=progress)
        copied_at = time.monotonic()
        with naming(f"the backup {path}"), ObservationStore.open(path) as copied:
            report = copied.check(progress=check_progress)
        if not report.ok:
            raise StoreError(f"the backup {path} failed its check ({_problems(report)}); it was removed")
        _sync(path)
    except BaseException:
        _remove(path)
        raise
    ended = time.monotonic()
    return BackupReport(
        str(path),
        method,
        path.stat().st_size,
        ended - started,
        copied_at - started,
        ended - copied_at,
        report,
    )


def _create(path: Path) -> None:
    """Create the empty destination file, owner-only; refuse an existing one or a missing folder."""
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot back up into {path}: the folder {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(
            f"cannot back up into {path}: it exists already (a backup never overwrites)"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"cannot back up into {path}: {exc.strerror}") from exc
    os.close(fd)


def _page_copy(source: ObservationStore, path: Path) -> None:
    """Copy the SQLite file page by page, in one step (one read transaction of the source)."""
    with naming(f"the source {shown(source.url)}"), errors_of_database(), source.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        with naming(f"the backup {path}"), errors_of_database():
            target = sqlite3.connect(path)
        try:
            driver.backup(target, pages=-1)
        finally:
            target.close()


def _problems(report: CheckReport) -> str:
    parts = list(report.quick_check or ())
    parts += [f"{row.session_id}/{row.cell_id}/{row.generation}: {row.reason}" for row in report.corrupt]
    if report.scan_error:
        parts.append(report.scan_error)
    return "; ".join(parts[:3]) + (" ..." if len(parts) > 3 else "")


def _sync(path: Path) -> None:
    """Make the new file and its name durable (the file's own commits are synced already)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _remove(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(OSError):
            leftover.unlink()
