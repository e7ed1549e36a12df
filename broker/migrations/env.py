"""Alembic environment: runs against the URL the caller puts in the config, or the settings'."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import broker.storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from broker.settings import get_settings
from broker.storage import create_db_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url
engine = config.attributes.get("engine") or create_db_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
