"""The tables of the store, as SQLAlchemy Core metadata.

Alembic owns the schema in the database (``migrations/``); these definitions
are what the operations query and what the migration check compares against.
Times are integer microseconds since the Unix epoch, UTC. In ``observations``
the payload is the last column, so that reading a row's metadata never walks
the overflow pages of a large payload. ``hosts`` holds one row per host id
(docs/several-hosts.md): its current incarnation and its lease, whose times are the
database's clock (see ``hosts.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

__all__ = ["NAMING_CONVENTION", "cells", "hosts", "metadata", "observations"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

IDENTIFIER = String(256)

cells = Table(
    "cells",
    metadata,
    Column("session_id", IDENTIFIER, primary_key=True),
    Column("cell_id", IDENTIFIER, primary_key=True),
    Column("closed", Boolean(create_constraint=False), nullable=False, server_default=false()),
    Column("last_generation", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # SQLite: clustered on the key, kept once (revision 0002); PostgreSQL ignores it.
    sqlite_with_rowid=False,
)

observations = Table(
    "observations",
    metadata,
    Column("session_id", IDENTIFIER, primary_key=True),
    Column("cell_id", IDENTIFIER, primary_key=True),
    Column("generation", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(8), nullable=False),
    Column("kind", String(10), nullable=True),
    Column("payload_bytes", BigInteger, nullable=True),
    # The 32 raw digest bytes, half the size of hex; Observation.payload_sha256 shows hex.
    Column("payload_sha256", LargeBinary, nullable=True),
    Column("begun_at", BigInteger, nullable=False),
    Column("recorded_at", BigInteger, nullable=True),
    Column("released_at", BigInteger, nullable=True),
    Column("request", Text, nullable=True),
    # Who began the generation (revision 0003): NULL for a store opened without
    # a host id; kept after the generation ends.
    Column("host_id", IDENTIFIER, nullable=True),
    Column("incarnation", BigInteger, nullable=True),
    Column("payload", LargeBinary, nullable=True),
    ForeignKeyConstraint(
        ["session_id", "cell_id"],
        ["cells.session_id", "cells.cell_id"],
        ondelete="CASCADE",
    ),
    CheckConstraint("state IN ('pending', 'failed', 'retained', 'released')", name="state"),
    CheckConstraint("kind IS NULL OR kind IN ('yielded', 'completed', 'terminated', 'missing')", name="kind"),
    CheckConstraint("(payload IS NULL) = (state IN ('pending', 'released'))", name="payload_state"),
)

hosts = Table(
    "hosts",
    metadata,
    Column("host_id", IDENTIFIER, primary_key=True),
    # Goes up by one with each open of the host id; the first is 1.
    Column("incarnation", BigInteger, nullable=False),
    # The lease of the current incarnation, by the database's clock: it runs
    # until lease_expires_at; the host is lost once lease_micros more went by.
    Column("lease_micros", BigInteger, nullable=False),
    Column("lease_expires_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
)

# pending() and fail_pending() look only at pending rows: a partial index keeps
# them cheap however many retained rows and tombstones the file holds.
Index(
    "ix_observations_pending",
    observations.c.state,
    sqlite_where=observations.c.state == "pending",
    postgresql_where=observations.c.state == "pending",
)
