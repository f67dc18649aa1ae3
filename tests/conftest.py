from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.runbooks import Runbooks, load_runbooks
from runbooks import BUNDLED
from storage.db import Database, make_engine
from storage.migrate import upgrade
from tests.databases import POSTGRES_URL, fresh_database
from tests.harness import Harness, running_firebreak


@pytest.fixture(scope="session")
def runbooks() -> Runbooks:
    return load_runbooks(BUNDLED)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test using this runs twice: on SQLite and on the real Postgres."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    engine = make_engine(database_url)
    upgrade(engine)
    database = Database(engine)
    yield database
    database.dispose()


@pytest.fixture
async def slack(database_url: str) -> AsyncIterator[Harness]:
    """Firebreak over HTTP + the Slack emulator, on SQLite and on Postgres."""
    async with running_firebreak(database_url) as harness:
        yield harness


@pytest.fixture
def checkout_db_url() -> str:
    """Where the action rig's `checkout` points its Postgres actions (tests/action_rig.py).
    A module whose actions touch every session of their database overrides it with a
    scratch database of its own."""
    return POSTGRES_URL.replace("+psycopg", "")


@pytest.fixture
def rig_settings() -> dict[str, str]:
    """Extra settings for the action rig's Firebreak (e.g. FIREBREAK_RUNBOOKS); a module
    overrides it."""
    return {}
