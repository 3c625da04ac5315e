"""Alembic environment: runs migrations on the connection vtr hands over."""

from alembic import context

from index.catalog_schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
