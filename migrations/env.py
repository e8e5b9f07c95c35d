"""Alembic environment of codemode_store.

Run two ways: by the library (``codemode_store.migrate``), which passes an open
connection in ``config.attributes["connection"]`` and owns its transaction; or by
the ``alembic`` command of a developer, which reads the URL from
``CODEMODE_STORE_URL`` (or ``sqlalchemy.url`` in alembic.ini).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from codemode_store.schema import metadata

config = context.config


def run_on(connection: Connection) -> None:
    """Run the migrations on ``connection`` inside its current transaction."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run against the connection the library gave, or open one from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    from codemode_store.engine import build_engine, to_url
    from codemode_store.migrate import migration_connection

    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = os.environ.get("CODEMODE_STORE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CODEMODE_STORE_URL to the database to migrate")
    engine = build_engine(to_url(url))
    try:
        with migration_connection(engine) as conn:
            run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=os.environ.get("CODEMODE_STORE_URL") or config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
