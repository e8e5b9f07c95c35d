"""Copy sessions, every row as it is, from one store into another of either backend.

The source is read in one snapshot (``snapshot.snapshot``) from start to end,
so the copy is the store as it was at one instant while hosts keep writing.
Each session lands in one write transaction of the target: an interrupted copy
leaves whole sessions, and a re-run skips the sessions the target already holds
identically. Before anything is written, a session the target holds with
other rows stops the whole copy (``SessionConflict``, naming them). Every
payload is checked against its recorded size and sha256 as it arrives, before
it is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from ..engine import is_memory, is_sqlite, to_url
from ..errors import DatabaseError, InvalidInput
from ..jsonable import json_object
from ..store import ObservationStore
from ..validation import check_identifier
from . import tables
from .errors import SessionConflict, UnknownSession
from .rows import check_payload, digest_rows
from .snapshot import naming, snapshot
from .writing import insert_rows

__all__ = [
    "TRANSFER_CALL_TIMEOUT",
    "CopyProgress",
    "CopyReport",
    "CopyState",
    "copy_sessions",
    "copy_to",
    "same_database",
    "shown",
]

#: Seconds one transaction of a transfer may take on PostgreSQL (the ``call_timeout`` of
#: the target store ``copy_to`` opens): a whole session is one call, not one operation.
TRANSFER_CALL_TIMEOUT = 3600.0
#: How many session names one ``IN (...)`` of the target's check carries.
_NAMES_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class CopyState:
    """How far a copy is: sessions, rows and payload bytes, done and in all."""

    sessions_done: int
    sessions_total: int
    rows_done: int
    rows_total: int
    bytes_done: int
    bytes_total: int


#: Called with the state of the copy after each batch of rows it writes.
CopyProgress = Callable[[CopyState], None]


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did: the sessions copied, those skipped (already there, identical), rows and bytes."""

    target: str
    copied: tuple[str, ...]
    skipped: tuple[str, ...]
    rows: int
    payload_bytes: int

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-able values."""
        return json_object(self, ("target", "copied", "skipped", "rows", "payload_bytes"))


def shown(url: URL) -> str:
    """Return a database as it may be printed: a SQLite file as its path, any password hidden."""
    if is_sqlite(url) and not is_memory(url):
        return str(url.database)
    return url.render_as_string(hide_password=True)


def same_database(first: URL, second: URL) -> bool:
    """Tell whether two URLs name the same database (one SQLite file, or one server's database)."""
    if first.get_backend_name() != second.get_backend_name():
        return False
    if is_sqlite(first):
        if is_memory(first) or is_memory(second):
            return False
        one, other = Path(first.database or ""), Path(second.database or "")
        try:
            return one.exists() and other.exists() and os.path.samefile(one, other)
        except OSError:
            return False
    port = {"postgresql": 5432}.get(first.get_backend_name())
    place = [(u.host or "localhost", u.port or port, u.database) for u in (first, second)]
    return place[0] == place[1]


def _server_identity(conn: Connection) -> tuple[Any, ...] | None:
    """Return what tells a PostgreSQL database apart from another (``None`` on SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    query = "SELECT current_database(), pg_postmaster_start_time(), inet_server_port(), inet_server_addr()"
    return tuple(conn.exec_driver_sql(query).one())


def copy_to(
    source: ObservationStore,
    target: str | os.PathLike[str] | URL,
    session_ids: Sequence[str] | None = None,
    *,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy the sessions named (every one by default) into the store at ``target``, created or upgraded.

    The target is opened only once the source is read and every named session
    found in it, so a refused copy creates no target file.
    """
    url = to_url(target)
    if same_database(source.url, url):
        raise InvalidInput(f"the target {shown(url)} is the source store itself: name another database")
    wanted = _checked_names(session_ids)
    with snapshot(source.engine, shown(source.url)) as reader:
        with naming(f"the source {shown(source.url)}"):
            sessions = _chosen(reader, wanted)
        with naming(f"the target {shown(url)}"):
            opened = ObservationStore.open(url, call_timeout=TRANSFER_CALL_TIMEOUT)
        try:
            with naming(f"the target {shown(url)}"):
                target_identity = opened.read(_server_identity)
            if target_identity is not None and target_identity == _server_identity(reader):
                raise InvalidInput(
                    f"the target {shown(url)} is the source store itself: name another database"
                )
            return _copy(reader, source, opened, sessions, progress, whole=wanted is None)
        finally:
            opened.close()


def copy_sessions(
    source: ObservationStore,
    target: ObservationStore,
    session_ids: Sequence[str] | None = None,
    *,
    progress: CopyProgress | None = None,
) -> CopyReport:
    """Copy the sessions named (every one by default) from one open store into another.

    Each session is one call of ``target``: on PostgreSQL open it with a
    ``call_timeout`` that a whole session's copy fits in (``copy_to`` uses
    ``TRANSFER_CALL_TIMEOUT``).
    """
    if same_database(source.url, target.url):
        raise InvalidInput(
            f"the target {shown(target.url)} is the source store itself: name another database"
        )
    wanted = _checked_names(session_ids)
    with snapshot(source.engine, shown(source.url)) as reader:
        with naming(f"the source {shown(source.url)}"):
            sessions = _chosen(reader, wanted)
        return _copy(reader, source, target, sessions, progress, whole=wanted is None)


def _checked_names(session_ids: Sequence[str] | None) -> list[str] | None:
    if session_ids is None:
        return None
    if isinstance(session_ids, str):
        raise InvalidInput("session_ids is a list of session names, not one string")
    return list(dict.fromkeys(check_identifier(s, "session_id") for s in session_ids))


def _chosen(reader: Connection, wanted: list[str] | None) -> list[str]:
    """Return the sessions to copy, in order; ``UnknownSession`` if a named one is not in the source."""
    if wanted is None:
        return list(reader.execute(tables.sessions_query(None)).scalars())
    found: set[str] = set()
    for start in range(0, len(wanted), _NAMES_PER_QUERY):
        found.update(
            reader.execute(tables.sessions_query(wanted[start : start + _NAMES_PER_QUERY])).scalars()
        )
    missing = [s for s in wanted if s not in found]
    if missing:
        if len(missing) == 1:
            raise UnknownSession(
                "the source holds no such session; nothing was copied", session_id=missing[0]
            )
        names = ", ".join(repr(s) for s in missing)
        raise UnknownSession(f"the source holds no sessions {names}; nothing was copied")
    return wanted


def session_digest(conn: Connection, session_id: str) -> bytes:
    """Return a digest of every row of a session, payloads by their recorded sha256."""
    batches = (
        batch for spec in tables.session_tables() for batch in spec.rows(conn, session_id, metadata_only=True)
    )
    return digest_rows(batches)


def held_sessions(conn: Connection, sessions: Sequence[str]) -> set[str]:
    """Return which of ``sessions`` the store on ``conn`` holds."""
    found: set[str] = set()
    for start in range(0, len(sessions), _NAMES_PER_QUERY):
        found.update(
            conn.execute(tables.sessions_query(sessions[start : start + _NAMES_PER_QUERY])).scalars()
        )
    return found


def _copy(
    reader: Connection,
    source: ObservationStore,
    target: ObservationStore,
    sessions: list[str],
    progress: CopyProgress | None,
    *,
    whole: bool,
) -> CopyReport:
    where = f"the target {shown(target.url)}"
    with naming(where):
        held = target.read(lambda conn: held_sessions(conn, sessions))
    skipped: list[str] = []
    differing: list[str] = []
    for session_id in sessions:
        if session_id not in held:
            continue
        with naming(where):
            theirs = target.read(lambda conn, s=session_id: session_digest(conn, s))  # type: ignore[misc]
        with naming(f"the source {shown(source.url)}"):
            ours = session_digest(reader, session_id)
        (skipped if theirs == ours else differing).append(session_id)
    if differing:
        names = ", ".join(repr(s) for s in differing)
        raise SessionConflict(
            f"{where} already holds {len(differing)} of these sessions with other rows: {names}; "
            "nothing was copied (end them there, or leave them out with --session)",
            differing,
        )
    todo = [s for s in sessions if s not in held]
    with naming(f"the source {shown(source.url)}"):
        sizes = tables.totals(reader, todo)
    state = CopyState(
        len(skipped),
        len(sessions),
        0,
        sum(r for r, _ in sizes.values()),
        0,
        sum(b for _, b in sizes.values()),
    )
    if progress is not None:
        progress(state)
    copier = _SessionCopier(reader, f"the source {shown(source.url)}", state, progress)
    if whole:
        # A whole store: every row of the store-wide tables (a host id that
        # began nothing yet too), those the target lacks, before the sessions.
        with naming(where):
            target.write(copier.copy_shared)
    for session_id in todo:
        with naming(where):
            target.write(lambda conn, s=session_id: copier.copy(conn, s), session_id=session_id)  # type: ignore[misc]
        copier.state = replace(copier.state, sessions_done=copier.state.sessions_done + 1)
        if progress is not None:
            progress(copier.state)
    final = copier.state
    return CopyReport(shown(target.url), tuple(todo), tuple(skipped), final.rows_done, final.bytes_done)


class _SessionCopier:
    """Copies one session at a time from the source snapshot into a target transaction."""

    def __init__(
        self, reader: Connection, source: str, state: CopyState, progress: CopyProgress | None
    ) -> None:
        self.reader = reader
        #: How errors of the source name it ("the source host.db").
        self.source = source
        self.state = state
        self.progress = progress

    def copy_shared(self, conn: Connection) -> None:
        """Write every row of the store-wide tables that the target lacks."""
        for shared in tables.shared_tables():
            with naming(self.source):
                found = shared.every_row(self.reader)
            present = shared.present(conn, [row[shared.key.name] for row in found])
            missing = [row for row in found if row[shared.key.name] not in present]
            if missing:
                insert_rows(conn, shared.table, missing)

    def copy(self, conn: Connection, session_id: str) -> None:
        """Write every row of ``session_id`` through ``conn`` (one transaction of the target)."""
        if held_sessions(conn, [session_id]):
            raise SessionConflict(
                "the session appeared in the target during the copy; nothing of it was written",
                [session_id],
            )
        for shared in tables.shared_tables():
            with naming(self.source):
                keys = shared.referenced(self.reader, session_id)
            present = shared.present(conn, keys)
            missing = [k for k in keys if k not in present]
            if missing:
                with naming(self.source):
                    rows = shared.rows(self.reader, missing)
                insert_rows(conn, shared.table, rows)
        rows_before = self.state.rows_done
        for spec in tables.session_tables():
            for batch in _guarded(spec.rows(self.reader, session_id), self.source):
                size = sum(check_payload(row) for row in batch)
                insert_rows(conn, spec.table, batch)
                self.state = replace(
                    self.state,
                    rows_done=self.state.rows_done + len(batch),
                    bytes_done=self.state.bytes_done + size,
                )
                if self.progress is not None:
                    self.progress(self.state)
                del batch  # before the next one is fetched: one batch of payloads at a time
        sent = self.state.rows_done - rows_before
        written = sum(
            int(conn.execute(spec.count, {"p_session": session_id}).scalar_one())
            for spec in tables.session_tables()
        )
        if written != sent:
            raise DatabaseError(
                f"the target holds {written} rows of the session after the copy, {sent} were sent; "
                "nothing of it was written",
                session_id=session_id,
            )


def _guarded(batches: Iterator[list[dict[str, Any]]], side: str) -> Iterator[list[dict[str, Any]]]:
    """Yield the batches of a source iterator, its errors named as the source's."""
    while True:
        with naming(side):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch
        batch = None  # let the caller drop it before the next one is fetched
