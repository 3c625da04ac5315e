"""Alembic migrations of the catalog schema (run by `vtr init`)."""
