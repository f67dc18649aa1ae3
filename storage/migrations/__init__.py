"""Alembic migrations, run by `firebreak db upgrade` and at `serve` start-up."""
