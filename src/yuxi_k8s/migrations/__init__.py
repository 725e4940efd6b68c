"""Alembic environment and versions for the state schema."""
