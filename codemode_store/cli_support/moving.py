"""What ``copy``, ``backup``, ``export`` and ``import`` print, and how they handle their files."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..transfer import BackupReport, CopyReport, CopyState, SessionFileReport
from .display import quoted

__all__ = ["backup_text", "copy_state_text", "copy_text", "file_text", "new_private_file", "seekable_input"]


def _names(names: tuple[str, ...], most: int = 5) -> str:
    shown = ", ".join(quoted(name) for name in names[:most])
    return shown + (f" and {len(names) - most:,} more" if len(names) > most else "")


def copy_text(report: CopyReport) -> str:
    """Return the lines that sum up a copy."""
    lines = [
        f"copied {len(report.copied):,} session(s) into {report.target}: "
        f"{report.rows:,} rows, {report.payload_bytes:,} payload bytes, each payload's sha256 checked"
    ]
    if report.skipped:
        lines.append(
            f"skipped {len(report.skipped):,} the target holds already, identical: {_names(report.skipped)}"
        )
    return "\n".join(lines)


def copy_state_text(state: CopyState | None) -> str:
    """Return the progress bar's note: sessions, rows and bytes done of all."""
    if state is None:
        return ""
    return (
        f"sessions {state.sessions_done:,}/{state.sessions_total:,}"
        f"  rows {state.rows_done:,}/{state.rows_total:,}"
        f"  bytes {state.bytes_done:,}/{state.bytes_total:,}"
    )


def backup_text(report: BackupReport) -> str:
    """Return the lines that sum up a backup."""
    check = report.check
    return (
        f"backed up into {report.destination} ({report.method}): {report.file_bytes:,} bytes "
        f"in {report.copy_seconds:.1f} s\nchecked: quick check ok, {check.payloads:,} payload(s) "
        f"re-hashed ({check.payload_bytes:,} bytes), none corrupt, in {report.check_seconds:.1f} s"
    )


def file_text(verb: str, report: SessionFileReport, where: str) -> str:
    """Return the line that sums up an export or import."""
    counts = ", ".join(f"{count:,} {table}" for table, count in report.counts.items() if count)
    size = f"{report.payload_bytes:,} payload bytes"
    return f"{verb} session {quoted(report.session_id)} {where}: {counts or 'no rows'}, {size}"


@contextlib.contextmanager
def seekable_input(name: str) -> Iterator[IO[bytes]]:
    """Yield the file ``name`` opened for reading; stdin (``-``) spooled to a temporary file first."""
    if name != "-":
        with open(name, "rb") as file:
            yield file
        return
    with tempfile.TemporaryFile() as spooled:
        shutil.copyfileobj(sys.stdin.buffer, spooled, 1024 * 1024)
        spooled.seek(0)
        yield spooled


@contextlib.contextmanager
def new_private_file(path: Path) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``path`` (0600) once the block ends well; nothing is left otherwise."""
    folder = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
