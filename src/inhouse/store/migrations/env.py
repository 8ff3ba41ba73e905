"""Alembic environment: runs on the engine the caller passed in (see store/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from inhouse.store.tables import Base

engine: Engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
