"""`kill -9` between PagerDuty's answer and the bot's record of it: no second page.

A real `firebreak serve` declares a P1; the PagerDuty fake opens the incident and
holds its answer; the process is killed while it waits, so PagerDuty paged and the
bot never recorded it. A fresh process retries the queued call once the dead one's
claim lapses, finds the open incident by its incident_key, and records it: one
PagerDuty incident, one page message, one `paging.paged` event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from emulator import SlackDriver, SlackEmulator
from emulator.pagerduty import PagerDutyEmulator
from runbooks import BUNDLED
from storage.migrate import upgrade_database
from storage.models import Event
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import ServeProcess

pytestmark = pytest.mark.slow

HOLD = 5.0  # seconds PagerDuty holds its answer; the bot is killed meanwhile
RETRY_DEADLINE = 40.0  # the dead process's claim lapses (10 s), then the sweep (10 s)


def events(url: str, kind: str) -> list[Event]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(Event).where(Event.type == kind)))
    finally:
        engine.dispose()


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        await asyncio.sleep(0.1)


async def test_no_second_page_after_kill_9_between_the_call_and_its_record(
    database_url: str, tmp_path: Path
) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE])
    upgrade_database(database_url)
    async with (
        SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as slack,
        PagerDutyEmulator() as pd,
    ):
        env = {
            "PAGERDUTY_API_TOKEN": pd.state.token,
            "PAGERDUTY_FROM_EMAIL": "alice@example.com",
            "PAGERDUTY_API_URL": pd.api_url,
        }
        serve = ServeProcess(
            api_url=slack.api_url,
            database_url=database_url,
            runbooks=BUNDLED,
            log=tmp_path / "serve.log",
            env=env,
        )
        try:
            await serve.start()
            pd.hold_answer("POST", "/incidents", HOLD)
            driver = SlackDriver(f"{serve.url}/slack/events", SIGNING_SECRET, workspace)
            response = await driver.slash_command(
                ALICE, general.id, "declare P1 checkout API returning 502s"
            )
            assert response.status == 200
            await wait_until(lambda: pd.state.incidents, 20, "PagerDuty opened the incident")
            await serve.kill()
            assert events(database_url, "paging.paged") == []

            await serve.start()
            await wait_until(
                lambda: events(database_url, "paging.paged"),
                RETRY_DEADLINE,
                "the restarted bot recorded the page",
            )
            await asyncio.sleep(1)  # room for a wrong second attempt to show
        finally:
            await serve.kill()
    assert len(pd.state.incidents) == 1
    assert [w for w in pd.state.writes if w[0] == "POST"] and len(pd.state.writes) == 1
    [paged] = events(database_url, "paging.paged")
    assert paged.payload["pagerduty_incident"] == next(iter(pd.state.incidents))
    [channel] = [c for c in workspace.channels.values() if c.name.startswith("incident-")]
    pages = [m for m in workspace.messages(channel.id) if "Paged *checkout*" in str(m.get("text"))]
    assert len(pages) == 1
