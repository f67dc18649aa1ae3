"""Apply the Alembic migrations, and tell whether a database's schema fits this code."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant: every replica upgrading at start-up takes this Postgres
# advisory lock, so two replicas never run the same migration at once.
_ADVISORY_LOCK = 7_263_001


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = _config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade_database(url: str) -> None:
    """Upgrade the database at `url` and close the connections it used."""
    from storage.db import make_engine

    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@cache
def code_heads() -> frozenset[str]:
    """The revisions this code's models match (read once: the files don't change)."""
    return frozenset(ScriptDirectory.from_config(_config()).get_heads())


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this release knows; one it doesn't is from a newer release."""
    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def schema_heads(session: Session) -> frozenset[str]:
    """The revisions the database's schema is at (empty if it was never migrated)."""
    return frozenset(MigrationContext.configure(session.connection()).get_current_heads())
