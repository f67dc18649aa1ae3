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
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant: every replica upgrading at start-up takes this Postgres
# advisory lock, so two replicas never run the same migration at once.
_ADVISORY_LOCK = 7_263_001


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> bool:
    """Migrate to `revision`; True when the database had no schema before (a first start)."""
    config = _config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
        empty = not MigrationContext.configure(connection).get_current_heads()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return empty


def upgrade_database(url: str) -> bool:
    """Upgrade the database at `url` and close the connections it used; True on its first
    migration. A database that can't be reached (or a URL that can't be parsed) raises
    `DatabaseSetupError` in one line naming the host, never the password."""
    from storage.db import DatabaseSetupError, describe, failure_reason, make_engine

    try:
        engine = make_engine(url)
    except (ArgumentError, ValueError):
        # Not the parser's message: it quotes the URL, password and all.
        raise DatabaseSetupError("DATABASE_URL could not be parsed as a database URL") from None
    try:
        return upgrade(engine)
    except OperationalError as exc:
        raise DatabaseSetupError(
            f"cannot reach the database at {describe(url)}: {failure_reason(url, exc)}"
        ) from None
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
