"""Open the store a page serves: read-only unless releases are allowed.

Without ``--allow-release`` the page must not be able to write, whatever a
request asks: a SQLite file is opened with ``mode=ro`` (SQLite itself refuses
every write), and a PostgreSQL connection starts every transaction read-only
(``default_transaction_read_only``). A read-only store is never migrated, so
it must already be at this version's schema revision.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from .. import migrate
from ..cli_support.admin import open_existing, shown, sqlite_path
from ..cli_support.errors import StoreNotFound
from ..engine import DEFAULT_BUSY_TIMEOUT, configure_sqlite, to_url
from ..errors import DatabaseError, SchemaError
from ..store import ObservationStore
from ..translate import errors_of_database

__all__ = ["open_for_page", "read_only_url"]


def read_only_url(url: URL) -> URL:
    """Return a URL of the same database whose connections cannot write."""
    path = sqlite_path(url)
    if path is not None:
        # A URI filename: characters such as ? and # in the path must be %-encoded.
        return URL.create(
            "sqlite", database=f"file:{quote(str(path.resolve()))}", query={"mode": "ro", "uri": "true"}
        )
    if url.get_backend_name() == "postgresql":
        given = url.query.get("options")
        options = "-c default_transaction_read_only=on"
        if isinstance(given, str) and given:
            options = f"{given} {options}"  # after the URL's own: ours wins
        return url.update_query_dict({"options": options})
    raise DatabaseError(
        f"cannot open {shown(url)} read-only: only SQLite and PostgreSQL stores can be served"
    )


def open_for_page(target: str, *, writable: bool) -> ObservationStore:
    """Open the store at ``target`` (never creating one); read-only unless ``writable``.

    ``writable`` opens it as the CLI does (an older schema is upgraded). A
    read-only store must be at the head revision: ``SchemaError`` otherwise.
    """
    if writable:
        return open_existing(target)
    url = to_url(target)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StoreNotFound(f"no store at {path}; create one with `codemode-store db upgrade`")
    if path is not None:
        engine = create_engine(read_only_url(url), connect_args={"check_same_thread": False})
        configure_sqlite(engine, durability="full", busy_timeout=DEFAULT_BUSY_TIMEOUT)
    else:
        from ..engine import build_engine

        with errors_of_database():
            engine = build_engine(read_only_url(url))
    try:
        with errors_of_database():
            revision = migrate.current_revision(engine)
        _check_revision(url, revision)
    except BaseException:
        engine.dispose()
        raise
    return ObservationStore(engine)


def _check_revision(url: URL, revision: str | None) -> None:
    if revision is None:
        raise StoreNotFound(
            f"no store at {shown(url)}: the database has no codemode_store schema; "
            "create one with `codemode-store db upgrade`"
        )
    if revision == migrate.HEAD_REVISION:
        return
    known = {rev for rev, _down, _message in migrate.history()}
    if revision in known:
        raise SchemaError(
            f"the store is at schema revision {revision!r} and a read-only page cannot upgrade it to "
            f"{migrate.HEAD_REVISION!r}: run `codemode-store db upgrade` first"
        )
    raise SchemaError(
        f"the database is at schema revision {revision!r}, which this version of codemode_store does "
        f"not know (its newest is {migrate.HEAD_REVISION!r}): upgrade the package"
    )
