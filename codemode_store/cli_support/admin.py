"""Open a store for a tool, and manage its schema, without creating one by accident.

``ObservationStore.open`` creates a missing database, which is right for a
host. A tool that inspects a host's database must not: a mistyped path would
leave an empty store behind and report that it holds nothing. So
:func:`open_existing` refuses a location that holds no store, while
:func:`upgrade_schema` (``codemode-store db upgrade``) creates one on purpose.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from .. import migrate
from ..engine import build_engine, is_memory, is_sqlite, to_url
from ..errors import DatabaseError
from ..jsonable import json_object
from ..store import ObservationStore
from ..translate import errors_of_database
from .errors import StoreNotFound

__all__ = [
    "REVISION_KEYS",
    "RevisionInfo",
    "StoreNotFound",
    "file_sizes",
    "hide_password",
    "open_existing",
    "revision_record",
    "schema_history",
    "schema_revision",
    "shown",
    "sqlite_path",
    "upgrade_schema",
]


def shown(url: URL) -> str:
    """Return ``url`` as it may be printed: a SQLite file as its path, any password hidden."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """Return the file of a SQLite URL, or ``None`` (another backend, or in memory)."""
    if not is_sqlite(url) or is_memory(url):
        return None
    database = url.database or ""
    return Path(database[5:] if database.startswith("file:") else database)


_PASSWORD_IN_URL = re.compile(r"://[^/@:]*:([^/@]+)@")


def hide_password(text: str, target: str) -> str:
    """Return ``text`` with the password of the database URL ``target`` replaced by ``***``.

    Works on the raw string too, so that a URL too malformed to parse cannot
    leak its password through an error message that quotes it. The password is
    masked wherever it stands as a token of its own (raw or percent-encoded),
    not inside a longer word: a common password such as ``postgres`` must not
    also blank the ``postgresql`` of a dialect's name.
    """
    secrets: set[str] = set()
    match = _PASSWORD_IN_URL.search(target)
    if match:
        secrets.add(match.group(1))
    # The URL itself, quoted whole, is shown with only its password hidden.
    quoted_urls: dict[str, str] = {}
    with contextlib.suppress(Exception):
        url = to_url(target)
        if url.password:
            secrets.add(str(url.password))
            hidden = url.render_as_string(hide_password=True)
            shown_forms = (target, url.render_as_string(hide_password=False), hidden)
            quoted_urls = {form: hidden for form in shown_forms}
    for index, form in enumerate(quoted_urls):
        text = text.replace(form, f"\0url{index}\0")
    forms = {form for secret in secrets for form in (secret, quote(secret, safe=""), unquote(secret))}
    for form in sorted(forms, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", "***", text)
    for index, hidden in enumerate(quoted_urls.values()):
        text = text.replace(f"\0url{index}\0", hidden)
    return text


def _build(target: str, *, create: bool) -> tuple[URL, Engine]:
    url = to_url(target)
    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        raise StoreNotFound(f"no store at {path}; create one with `codemode-store db upgrade`")
    try:
        with errors_of_database():
            return url, build_engine(url)
    except ImportError as exc:
        raise DatabaseError(f"cannot load the database driver of {shown(url)}: {exc}") from exc


@contextlib.contextmanager
def _engine(target: str, *, create: bool) -> Iterator[tuple[URL, Engine]]:
    url, engine = _build(target, create=create)
    try:
        yield url, engine
    finally:
        engine.dispose()


def _revision(engine: Engine) -> str | None:
    with errors_of_database():
        return migrate.current_revision(engine)


def open_existing(target: str) -> ObservationStore:
    """Open the store at ``target``; ``StoreNotFound`` if there is none (nothing is created).

    A store at an older schema revision is upgraded, as ``ObservationStore.open`` does.
    """
    url, engine = _build(target, create=False)
    try:
        if _revision(engine) is None:
            raise StoreNotFound(
                f"no store at {shown(url)}: the database has no codemode_store schema; "
                "create one with `codemode-store db upgrade`"
            )
        with errors_of_database():
            migrate.ensure_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return ObservationStore(engine)


def schema_revision(target: str) -> str | None:
    """Return the schema revision stamped at ``target`` (``None``: no schema yet)."""
    with _engine(target, create=False) as (_url, engine):
        return _revision(engine)


def upgrade_schema(target: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or upgrade the schema at ``target`` to ``revision``; return (before, after)."""
    with _engine(target, create=True) as (_url, engine):
        before = _revision(engine)
        with errors_of_database():
            migrate.upgrade(engine, revision)
        return before, _revision(engine)


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """One schema revision this version knows."""

    revision: str
    down_revision: str | None
    message: str
    is_head: bool
    is_current: bool


#: The keys of a revision in ``db history --json``: the attributes of the same names.
REVISION_KEYS = ("revision", "down_revision", "message", "is_head", "is_current")


def revision_record(revision: RevisionInfo) -> dict[str, Any]:
    """Return the JSON object of a revision (``db history --json``)."""
    return json_object(revision, REVISION_KEYS)


def schema_history(target: str | None) -> list[RevisionInfo]:
    """Return the known revisions, newest first, marking the one stamped at ``target``.

    ``target`` may name no store (or be ``None``): then no revision is current.
    """
    current = None
    if target is not None:
        with contextlib.suppress(StoreNotFound):
            current = schema_revision(target)
    return [
        RevisionInfo(rev, down, message, rev == migrate.HEAD_REVISION, rev == current)
        for rev, down, message in migrate.history()
    ]


def file_sizes(url: URL) -> tuple[int | None, int | None]:
    """Return the sizes in bytes of a SQLite database file and its WAL (``None`` if absent)."""
    path = sqlite_path(url)
    if path is None:
        return None, None
    sizes: list[int | None] = []
    for candidate in (path, Path(os.fspath(path) + "-wal")):
        try:
            sizes.append(candidate.stat().st_size)
        except OSError:
            sizes.append(None)
    return sizes[0], sizes[1]
