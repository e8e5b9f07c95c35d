"""SQLite: the cells table without a rowid, clustered on its primary key.

A rowid table keeps a cell's key twice (in the row and in the primary key
index) and writes both pages when a cell is created; clustered on
``(session_id, cell_id)`` the key is kept once, a cell is one b-tree entry,
and every lookup by key is one descent. PostgreSQL has no such option: the
revision changes nothing there.

The table is rebuilt (batch mode) with foreign key enforcement off, as for
every migration (``codemode_store.migrate.foreign_keys_off``): dropping the
old table must not cascade to the observations that reference it. The
references are checked, and the old table's pages given back, before the
transaction commits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_cells(with_rowid: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    free_before = bind.execute(sa.text("PRAGMA freelist_count")).scalar_one()
    with op.batch_alter_table("cells", recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}):
        pass
    broken = bind.execute(sa.text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"rebuilding cells broke {len(broken)} references of observations")
    # Give back the pages the old table left free (a no-op on a file without
    # auto-vacuum), so that a new store does not start with free pages; pages
    # that were free before are `codemode-store vacuum`'s to give back. The
    # pragma frees one page each time it runs (see codemode_store.space).
    freed = bind.execute(sa.text("PRAGMA freelist_count")).scalar_one() - free_before
    for _ in range(max(0, freed)):
        bind.execute(sa.text("PRAGMA incremental_vacuum(1)"))


def upgrade() -> None:
    """Rebuild ``cells`` as a WITHOUT ROWID table (SQLite only)."""
    _rebuild_cells(with_rowid=False)


def downgrade() -> None:
    """Rebuild ``cells`` as a rowid table again (SQLite only)."""
    _rebuild_cells(with_rowid=True)
