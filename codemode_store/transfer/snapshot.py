"""One consistent read of a whole store: the source side of copy, backup and export.

SQLite: a deferred ``BEGIN`` and a first read pin the WAL snapshot, which every
later read of the transaction sees, while hosts keep committing beside it (a
WAL reader blocks no writer; the checkpoint merely stops at the snapshot until
it ends). PostgreSQL: a ``REPEATABLE READ READ ONLY`` transaction, whose
snapshot is taken by its first read, with no limit on how long it may wait
idle between two reads (it holds no row lock). Driver errors on the source are
raised as ``StoreError`` subclasses naming the source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, text

from ..engine import READ_ONLY
from ..errors import DatabaseError, InvalidInput, SchemaError, StoreError
from ..translate import DRIVER_ERRORS, translate

__all__ = ["naming", "snapshot"]

_PIN = text("SELECT version_num FROM alembic_version")
_NO_IDLE_LIMIT = text("SET LOCAL idle_in_transaction_session_timeout = 0")


@contextlib.contextmanager
def snapshot(engine: Engine, shown: str) -> Iterator[Connection]:
    """Yield a connection inside one read transaction over a fixed snapshot of ``engine``'s store."""
    options: dict[str, Any]
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    else:
        options = {READ_ONLY: True}
    with naming(f"the source {shown}"):
        conn = engine.connect().execution_options(**options)
    try:
        with naming(f"the source {shown}"):
            transaction = conn.begin()
            if engine.dialect.name == "postgresql":
                # The store's connections end a transaction idle for call_timeout (a
                # frozen host's row locks); this one holds no row lock and may wait on
                # the target longer between two reads. pg_dump does the same.
                conn.execute(_NO_IDLE_LIMIT)
            conn.execute(_PIN).all()  # takes the snapshot now, not at the first page
        try:
            yield conn
        finally:
            with contextlib.suppress(*DRIVER_ERRORS):
                transaction.rollback()
    finally:
        with contextlib.suppress(*DRIVER_ERRORS):
            conn.close()


@contextlib.contextmanager
def naming(side: str) -> Iterator[None]:
    """Re-raise a driver error, or a ``StoreError``, with ``side`` ("the target X") in its message.

    A store error keeps its class (``DatabaseUnavailable`` still says retry);
    its ``database`` attribute holds ``side``, so that a front end does not
    name another database beside it.
    """
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise _about(translate(exc), side) from exc
    except (DatabaseError, SchemaError, InvalidInput) as exc:
        # Only the errors of a database (or of its URL): a rule's answer about
        # a session says what it is about already.
        if getattr(exc, "database", None) is not None:
            raise
        raise _about(exc, side) from exc


def _about(exc: StoreError, side: str) -> StoreError:
    detail = exc.detail.removeprefix("database error: ")
    try:
        named = type(exc)(
            f"{side}: {detail}", session_id=exc.session_id, cell_id=exc.cell_id, generation=exc.generation
        )
    except TypeError:  # a class with arguments of its own: keep it as it is
        named = exc
    named.database = side  # type: ignore[attr-defined]
    return named
