"""Alembic migrations of codemode_store (installed as ``codemode_store.migrations``)."""
