"""The one door maintenance code has to the database: read and write transactions.

``retention``, ``integrity`` and ``space`` (and the CLI's inspection) accept a
:class:`Transactions`, which ``ObservationStore`` implements. They never import
the store, so dependencies point one way: the store uses them, they use this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine

__all__ = ["Transactions"]

T = TypeVar("T")


class Transactions(Protocol):
    """Run a function of a SQLAlchemy connection in one transaction, errors typed.

    ``read`` and ``write`` run ``work(conn)`` inside a read or a write
    transaction (on SQLite ``BEGIN`` or ``BEGIN IMMEDIATE``) and turn driver
    errors into ``StoreError`` subclasses; ``session_id`` names the session the
    work is about in those errors. ``engine`` is there for what cannot run in a
    transaction (``VACUUM``, a WAL checkpoint) and for the dialect's name.
    """

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine the transactions run on."""
        ...

    def read(self, work: Callable[[Connection], T], *, session_id: str | None = None) -> T:
        """Run ``work(conn)`` in one read transaction and return what it returns."""
        ...

    def write(self, work: Callable[[Connection], T], *, session_id: str | None = None) -> T:
        """Run ``work(conn)`` in one write transaction, committed when it returns."""
        ...
