"""Test databases: a fresh SQLite file, or a fresh schema on the real Postgres.

Postgres tests skip with a visible reason when nothing answers on 5432,
unless FIREBREAK_REQUIRE_POSTGRES=1 (set by .ci/run), which turns the skip
into a failure so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get(
    "FIREBREAK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_or_skip() -> None:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"Postgres not reachable at {POSTGRES_URL.split('@')[-1]}: {type(exc).__name__}"
        if os.environ.get("FIREBREAK_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (FIREBREAK_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    finally:
        engine.dispose()


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield a URL to an empty database of `kind` ("sqlite" or "postgres")."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'firebreak.db'}"
        return
    postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
