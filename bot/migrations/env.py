"""Alembic environment: Signoff passes the connection in; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from bot.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `signoff db upgrade`")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
