"""Alembic revisions of codemode_store, oldest first."""
