"""Alembic migrations of the store: the only thing that creates or changes its tables."""
