"""Nudges survive kill -9 and are sent exactly once by several replicas.

Real `firebreak serve` processes, the Slack emulator on loopback, and (for
replicas) one real Postgres. Cadences are seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from emulator import SlackDriver, SlackEmulator
from storage.migrate import upgrade_database
from storage.models import Event
from tests.databases import fresh_database
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import ServeProcess, runbooks_with_cadence

pytestmark = pytest.mark.slow


def nudge_texts(workspace, channel_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        str(m.get("text"))
        for m in workspace.messages(channel_id)
        if "a status update is due" in str(m.get("text"))
    ]


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_kill_9_then_restart_sends_one_late_nudge(kind: str, tmp_path: Path) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE])
    runbooks = runbooks_with_cadence(tmp_path, "3s")
    with fresh_database(kind, tmp_path) as url:
        upgrade_database(url)
        async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as emulator:
            serve = ServeProcess(
                api_url=emulator.api_url,
                database_url=url,
                runbooks=runbooks,
                log=tmp_path / "serve.log",
            )
            await serve.start()
            driver = SlackDriver(f"{serve.url}/slack/events", SIGNING_SECRET, workspace)
            await driver.slash_command(ALICE, general.id, "declare P1 checkout down")
            await wait_for(
                lambda: any(
                    c.name.startswith("incident-") and c.pins for c in workspace.channels.values()
                )
            )
            channel = next(c for c in workspace.channels.values() if c.name.startswith("incident-"))
            await serve.kill()  # kill -9 while the nudge is pending
            assert nudge_texts(workspace, channel.id) == []

            await asyncio.sleep(14)  # past the due time by more than the "late" threshold
            await serve.start()
            await wait_for(lambda: len(nudge_texts(workspace, channel.id)) >= 1)
            await asyncio.sleep(1)
            await serve.kill()
            [nudge] = nudge_texts(workspace, channel.id)
            assert "fell due while Firebreak was unavailable" in nudge


async def test_two_replicas_send_each_nudge_exactly_once(tmp_path: Path) -> None:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE])
    runbooks = runbooks_with_cadence(tmp_path, "2s")
    with fresh_database("postgres", tmp_path) as url:
        upgrade_database(url)
        async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as emulator:
            replicas = [
                ServeProcess(
                    api_url=emulator.api_url,
                    database_url=url,
                    runbooks=runbooks,
                    log=tmp_path / f"serve{i}.log",
                )
                for i in range(2)
            ]
            await asyncio.gather(*(r.start() for r in replicas))
            for n in range(20):
                replica = replicas[n % 2]
                driver = SlackDriver(f"{replica.url}/slack/events", SIGNING_SECRET, workspace)
                await driver.slash_command(ALICE, general.id, f"declare P1 outage number {n}")
            await wait_for(
                lambda: (
                    sum(
                        1
                        for c in workspace.channels.values()
                        if c.name.startswith("incident-") and c.pins
                    )
                    == 20
                )
            )
            await asyncio.sleep(9)  # several 2 s cycles
            for replica in replicas:
                # SIGTERM: let a nudge being posted be recorded before the replica stops.
                await replica.kill(signal.SIGTERM)

        engine = create_engine(url)
        with engine.connect() as connection:
            rows = connection.execute(
                select(Event.incident_id, Event.payload).where(Event.type == "nudge")
            ).all()
        engine.dispose()
        per_incident = Counter(incident_id for incident_id, _ in rows)
        assert len(per_incident) == 20 and min(per_incident.values()) >= 2
        # Each due time was nudged once: no duplicates across the replicas.
        due_times = Counter((incident_id, payload["due_at"]) for incident_id, payload in rows)
        assert max(due_times.values()) == 1
        # And Slack saw exactly as many nudges as the log records.
        channels = [c for c in workspace.channels.values() if c.name.startswith("incident-")]
        assert sum(len(nudge_texts(workspace, c.id)) for c in channels) == len(rows)
