"""Two replicas on one Postgres keep the record true (issue 20, items 1 and 7).

Real `firebreak serve` processes behind two URLs, the Slack emulator on
loopback, one real Postgres. Races are staged, not timed: both clicks are
built from the message as both people saw it before either is sent, and a
reminder is held in flight at the emulator until the update has landed.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, select

from emulator import SlackDriver, SlackEmulator, Workspace, payloads
from emulator.models import Channel
from storage.migrate import upgrade_database
from storage.models import Event, Incident
from tests.databases import fresh_database
from tests.harness import ALICE, BOB, BOT_TOKEN, SIGNING_SECRET, seeded_workspace
from tests.processes import ServeProcess, runbooks_with_cadence

pytestmark = pytest.mark.slow

CHECKLIST = "checklist:0:0"  # the first phase's boxes


@dataclass
class Replicas:
    workspace: Workspace
    emulator: SlackEmulator
    drivers: list[SlackDriver]  # one per replica, as a load balancer would spread requests
    general: str
    database_url: str
    postmortems: Path

    def events(self, *types: str) -> list[Event]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(Event).where(Event.type.in_(types)).order_by(Event.id)
                )
                return [Event(type=r.type, actor=r.actor, at=r.at, payload=r.payload) for r in rows]
        finally:
            engine.dispose()

    def nudges_missed(self) -> int:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return int(connection.execute(select(Incident.nudges_missed)).scalar_one())
        finally:
            engine.dispose()

    async def declare(self) -> Channel:
        await self.drivers[0].slash_command(ALICE, self.general, "declare P1 checkout down")
        await wait_for(lambda: any(c.pins for c in incident_channels(self.workspace)))
        [channel] = incident_channels(self.workspace)
        announced = self.workspace.channel_by_name("incidents")
        assert announced is not None
        await wait_for(lambda: bool(self.workspace.messages(announced.id)))
        return channel


@asynccontextmanager
async def two_replicas(tmp_path: Path, *, cadence: str, **env: str) -> AsyncIterator[Replicas]:
    workspace = seeded_workspace()
    general = workspace.add_channel("general", members=[ALICE, BOB, workspace.bot_user_id])
    workspace.add_channel("incidents", members=[ALICE, BOB])
    runbooks = runbooks_with_cadence(tmp_path, cadence)
    postmortems = tmp_path / "postmortems"
    with fresh_database("postgres", tmp_path) as url:
        upgrade_database(url)
        async with SlackEmulator(bot_token=BOT_TOKEN, workspace=workspace) as emulator:
            replicas = [
                ServeProcess(
                    api_url=emulator.api_url,
                    database_url=url,
                    runbooks=runbooks,
                    log=tmp_path / f"serve{i}.log",
                    env={"FIREBREAK_POSTMORTEM_DIR": str(postmortems), **env},
                )
                for i in range(2)
            ]
            await asyncio.gather(*(r.start() for r in replicas))
            try:
                drivers = [
                    SlackDriver(f"{r.url}/slack/events", SIGNING_SECRET, workspace)
                    for r in replicas
                ]
                yield Replicas(workspace, emulator, drivers, general.id, url, postmortems)
            finally:
                for replica in replicas:
                    await replica.kill(signal.SIGTERM)


def incident_channels(workspace: Workspace) -> list[Channel]:
    return [c for c in workspace.channels.values() if c.name.startswith("incident-")]


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def checklist_boxes(channel: Channel) -> tuple[list[dict[str, Any]], set[str]]:
    """The first phase's options and the values shown ticked, as the message is now."""
    message = channel.messages[channel.pins[0]["ts"]]
    [element] = next(b for b in message["blocks"] if b.get("block_id") == CHECKLIST)["elements"]
    return element["options"], {o["value"] for o in element.get("initial_options", [])}


async def click(driver: SlackDriver, payload: dict[str, Any]) -> None:
    response = await driver.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status == 200 and response.acked_in_time


async def test_two_ticks_at_the_same_moment_on_two_replicas_both_count(tmp_path: Path) -> None:
    async with two_replicas(tmp_path, cadence="15m") as cluster:
        workspace = cluster.workspace
        channel = await cluster.declare()
        options, ticked = checklist_boxes(channel)
        assert not ticked
        first, second = (o["value"] for o in options[:2])

        # Both screens show no box ticked; each person ticks one. Slack sends each
        # click with its sender's whole selection and the message as they saw it.
        ts = channel.pins[0]["ts"]
        alice = payloads.block_actions(
            workspace, ALICE, channel.id, ts, {"checkboxes"}, CHECKLIST, selected=[first]
        )
        bob = payloads.block_actions(
            workspace, BOB, channel.id, ts, {"checkboxes"}, CHECKLIST, selected=[second]
        )
        await asyncio.gather(click(cluster.drivers[0], alice), click(cluster.drivers[1], bob))

        await wait_for(lambda: len(cluster.events("checklist_checked")) == 2)
        await wait_for(lambda: checklist_boxes(channel)[1] == {first, second})
        ticks = cluster.events("checklist_checked", "checklist_unchecked")
        assert sorted((e.type, e.payload["key"], e.actor) for e in ticks) == sorted(
            [("checklist_checked", first, ALICE), ("checklist_checked", second, BOB)]
        )

        # The post-mortem says who ticked what, and that nobody unticked anything.
        await cluster.drivers[1].slash_command(BOB, channel.id, "resolve rolled back")
        # As a person would, close once the resolution shows: each command is acked at
        # once and done by a worker, so one sent right behind it could be done first.
        await wait_for(lambda: len(cluster.events("resolved")) == 1)
        await cluster.drivers[0].slash_command(ALICE, channel.id, "close")
        written = cluster.postmortems / f"postmortem-{channel.name}.md"
        await wait_for(written.exists)
        markdown = written.read_text(encoding="utf-8")
        texts = {o["value"]: o["text"]["text"] for o in options}
        assert f"ticked “{texts[first]}” _(Alice Example)_" in markdown
        assert f"ticked “{texts[second]}” _(Bob Example)_" in markdown
        assert "unticked" not in markdown


async def test_an_update_that_crosses_a_reminder_in_flight_answers_it(tmp_path: Path) -> None:
    # Escalate after one unanswered reminder: counting the crossed one would escalate the next.
    async with two_replicas(tmp_path, cadence="3s", FIREBREAK_NUDGE_ESCALATE_AFTER="1") as cluster:
        reminder = cluster.emulator.hold("chat.postMessage", text="a status update is due")
        channel = await cluster.declare()
        await asyncio.wait_for(reminder.arrived.wait(), 30)
        # The reminder is claimed, read and being posted; an update lands meanwhile.
        await cluster.drivers[1].slash_command(BOB, channel.id, "update Rolled back, watching")
        await wait_for(lambda: bool(cluster.events("update")))
        reminder.release()

        await wait_for(lambda: len(cluster.events("nudge")) == 1)
        assert cluster.nudges_missed() == 0
        [crossed] = cluster.events("nudge")
        assert crossed.payload.get("answered") and not crossed.payload["escalated"]

        # The next reminder, a cadence after the update, is the first one unanswered.
        await wait_for(lambda: len(cluster.events("nudge")) == 2)
        second = cluster.events("nudge")[1]
        assert not second.payload["escalated"] and not second.payload.get("answered")
        workspace = cluster.workspace
        reminders = [t for t in texts(workspace, channel.id) if "is due" in t]
        assert "> Rolled back, watching" in reminders[-1]
        announced = workspace.channel_by_name("incidents")
        assert announced is not None
        assert not [t for t in texts(workspace, announced.id) if "unanswered" in t]


def texts(workspace: Workspace, channel_id: str) -> list[str]:
    return [str(m.get("text")) for m in workspace.messages(channel_id)]
