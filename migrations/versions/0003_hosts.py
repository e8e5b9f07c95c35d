"""Many hosts on one store: the hosts table, and who began each observation.

``hosts`` holds one row per host id: its current incarnation and its lease
(SPEC §8). ``observations`` gains ``host_id`` and ``incarnation``, NULL on
every row written before (and by stores opened without a host id).

On SQLite the observations table is rebuilt (batch mode, foreign key
enforcement off as for every migration) so that the new columns come before
``payload``: a payload stays the last column, and reading a row's metadata
never walks its overflow pages. The rebuild copies every row once; the pages
the old table leaves free are given back before the transaction commits (as
revision 0002 does). PostgreSQL adds the columns in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING_INDEX = "ix_observations_pending"


def _drop_pending_index() -> None:
    op.drop_index(_PENDING_INDEX, table_name="observations")


def _create_pending_index() -> None:
    op.create_index(
        _PENDING_INDEX,
        "observations",
        ["state"],
        unique=False,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )


def _check_and_give_back(free_before: int) -> None:
    """Check the references after a SQLite rebuild and give back the pages it freed."""
    bind = op.get_bind()
    broken = bind.execute(sa.text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"rebuilding observations broke {len(broken)} references")
    freed = bind.execute(sa.text("PRAGMA freelist_count")).scalar_one() - free_before
    for _ in range(max(0, freed)):
        bind.execute(sa.text("PRAGMA incremental_vacuum(1)"))


def _free_pages() -> int:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return 0
    return int(bind.execute(sa.text("PRAGMA freelist_count")).scalar_one())


def upgrade() -> None:
    """Create ``hosts``; add ``host_id`` and ``incarnation`` to ``observations``."""
    op.create_table(
        "hosts",
        sa.Column("host_id", sa.String(256), nullable=False),
        sa.Column("incarnation", sa.BigInteger(), nullable=False),
        sa.Column("lease_micros", sa.BigInteger(), nullable=False),
        sa.Column("lease_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_hosts")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    free_before = _free_pages()
    if sqlite:
        # The batch copy would keep the partial index without its WHERE: made anew below.
        _drop_pending_index()
    columns = (
        sa.Column("host_id", sa.String(256), nullable=True),
        sa.Column("incarnation", sa.BigInteger(), nullable=True),
    )
    if not sqlite:
        # Column order does not matter there: a large payload is kept out of line (TOAST).
        for column in columns:
            op.add_column("observations", column)
        return
    with op.batch_alter_table("observations", recreate="always") as batch:
        for column in columns:
            batch.add_column(column, insert_before="payload")
    _create_pending_index()
    _check_and_give_back(free_before)


def downgrade() -> None:
    """Drop ``host_id`` and ``incarnation`` of ``observations``, and ``hosts``."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    free_before = _free_pages()
    if sqlite:
        _drop_pending_index()
    with op.batch_alter_table("observations", recreate="always" if sqlite else "auto") as batch:
        batch.drop_column("incarnation")
        batch.drop_column("host_id")
    if sqlite:
        _create_pending_index()
    op.drop_table("hosts")
    if sqlite:
        _check_and_give_back(free_before)
