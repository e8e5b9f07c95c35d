"""Initial schema: cells and observations.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the cells and observations tables."""
    op.create_table(
        "cells",
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("cell_id", sa.String(256), nullable=False),
        sa.Column("closed", sa.Boolean(create_constraint=False), server_default=sa.false(), nullable=False),
        sa.Column("last_generation", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "cell_id", name=op.f("pk_cells")),
    )
    op.create_table(
        "observations",
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("cell_id", sa.String(256), nullable=False),
        sa.Column("generation", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(10), nullable=True),
        sa.Column("payload_bytes", sa.BigInteger(), nullable=True),
        sa.Column("payload_sha256", sa.LargeBinary(), nullable=True),
        sa.Column("begun_at", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=True),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'failed', 'retained', 'released')",
            name=op.f("ck_observations_state"),
        ),
        sa.CheckConstraint(
            "kind IS NULL OR kind IN ('yielded', 'completed', 'terminated', 'missing')",
            name=op.f("ck_observations_kind"),
        ),
        sa.CheckConstraint(
            "(payload IS NULL) = (state IN ('pending', 'released'))",
            name=op.f("ck_observations_payload_state"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id", "cell_id"],
            ["cells.session_id", "cells.cell_id"],
            name=op.f("fk_observations_session_id_cells"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "cell_id", "generation", name=op.f("pk_observations")),
    )
    op.create_index(
        "ix_observations_pending",
        "observations",
        ["state"],
        unique=False,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_index("ix_observations_pending", table_name="observations")
    op.drop_table("observations")
    op.drop_table("cells")
