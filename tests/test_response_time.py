"""The response target (severities.yml `response_time`) enforced: with no commander and
no update by then, the reminder escalates once, to the broadcast channel and to
PagerDuty; the post-mortem compares the time to acknowledge with the target."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.clock import OffsetClock
from emulator.pagerduty import PagerDutyEmulator
from storage.models import Event, Incident
from tests.harness import BOB, Harness, running_firebreak


@pytest.fixture
async def paged(database_url: str) -> AsyncIterator[tuple[Harness, PagerDutyEmulator, OffsetClock]]:
    clock = OffsetClock()
    async with (
        PagerDutyEmulator() as pd,
        running_firebreak(
            database_url,
            clock=clock,
            PAGERDUTY_API_TOKEN="pd-test-token",
            PAGERDUTY_FROM_EMAIL="alice@example.com",
            PAGERDUTY_API_URL=pd.api_url,
        ) as slack,
    ):
        # The test sends due reminders itself, at the times it chooses.
        await slack.app.scheduler.shutdown()
        yield slack, pd, clock


async def later(slack: Harness, clock: OffsetClock, minutes: int) -> int:
    clock.advance(timedelta(minutes=minutes))
    # On the worker loop, where the paging client lives.
    sent = await slack.app.services.reminders.send_due()
    await slack.settle()
    return sent


async def twice(send: Callable[[int], Awaitable[bool]], incident_id: int) -> list[bool]:
    return list(await asyncio.gather(send(incident_id), send(incident_id)))


async def events(slack: Harness, kind: str) -> list[Event]:
    return await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == kind)))
    )


def alarms(slack: Harness) -> list[str]:
    return [t for t in slack.texts(slack.announce) if "without a responder" in t]


async def test_nobody_on_it_within_the_target_escalates_once_and_pages(
    paged: tuple[Harness, PagerDutyEmulator, OffsetClock],
) -> None:
    slack, pd, clock = paged
    await slack.command("declare P2 checkout API slow")  # P2 does not page when declared
    channel = slack.only_incident_channel().id
    assert pd.state.incidents == {}
    assert await later(slack, clock, 31) == 1  # the 30-minute update reminder, nothing more
    assert alarms(slack) == [] and await events(slack, "response_overdue") == []

    clock.advance(timedelta(minutes=30))  # 61 minutes: the 1-hour target has passed
    reminders = slack.app.services.reminders
    incident_id = await slack.app.services.db.run(lambda s: s.scalar(select(Incident.id)))
    # Two replicas wake up for it at once: the claim lets one send it.
    sent = await twice(reminders.send, incident_id)
    await slack.settle()
    assert sorted(sent) == [False, True]

    [alarm] = alarms(slack)
    assert "checkout API slow" in alarm and "target: within 1 hour" in alarm
    [overdue] = await events(slack, "response_overdue")
    assert overdue.payload["target_seconds"] == 3600
    assert any("Nobody has taken this P2 on" in t for t in slack.texts(channel))
    [page] = pd.state.incidents.values()
    assert page["service"]["id"] == "PCHKOUT"

    assert await later(slack, clock, 31) == 1  # reminders go on; the escalation does not
    assert len(alarms(slack)) == 1 and len(pd.state.incidents) == 1
    assert len(await events(slack, "response_overdue")) == 1

    await slack.command("resolve cache warmed", channel=channel)
    await slack.command("close", channel=channel)
    document = json.loads(await slack.app.services.postmortems.render("1", "json"))
    assert document["response"] == {
        "target": "Within 1 hour",
        "target_seconds": 3600.0,
        "time_to_acknowledge": 0.0,  # a person declared it
        "met": True,
        "escalated": True,
    }


async def test_a_commander_in_time_means_no_escalation(
    paged: tuple[Harness, PagerDutyEmulator, OffsetClock],
) -> None:
    slack, pd, clock = paged
    await slack.command("declare P3 checkout typo on the receipt")  # no update reminders
    channel = slack.only_incident_channel().id
    await later(slack, clock, 60)
    await slack.command(f"commander <@{BOB}>", channel=channel)
    assert await later(slack, clock, 300) == 0
    assert alarms(slack) == [] and pd.state.incidents == {}
    assert await events(slack, "response_overdue") == []
    assert await events(slack, "nudge") == []
