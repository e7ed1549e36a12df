"""Alembic migrations for the broker's schema; run with `broker db upgrade`."""
