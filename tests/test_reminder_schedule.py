"""The next-due time under concurrent changes, severity changes and re-opening.

The clock is a `ManualClock` and the reminder send is held in flight by the
Slack emulator, so each interleaving is forced, never left to timing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from tests import test_reminders
from tests.harness import ALICE, Harness
from tests.test_reminders import ManualClock, declare, incident, nudges, tick

# The same movable clock, and the app with its scheduler stopped, as the other reminder tests.
clock = test_reminders.clock
slack = test_reminders.slack


async def recorded(slack: Harness, channel: str, text: str, due: datetime) -> None:
    """Send `text` while the reminder's post is held, and wait until the incident is due
    at `due`. Not `slack.command`, which waits for all the command's work: a post it makes
    in the channel waits behind the held one (posts to a channel go in order)."""
    await slack.driver.slash_command(ALICE, channel, text)
    for _ in range(200):
        if (await incident(slack)).next_update_due_at == due:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} was not recorded")


async def test_a_snooze_made_while_a_reminder_is_in_flight_stands(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack)
    incident_id = (await incident(slack)).id
    clock.advance(timedelta(minutes=15))
    held = slack.emulator.hold("chat.postMessage")
    sending = asyncio.create_task(slack.app.services.reminders.send(incident_id))
    await held.arrived.wait()  # claimed, and the post is at Slack
    clock.advance(timedelta(seconds=5))
    snoozed_until = clock.now() + timedelta(minutes=30)
    await recorded(slack, channel.id, "snooze 30m", snoozed_until)
    clock.advance(timedelta(seconds=5))
    held.release()  # the send finishes after the snooze
    assert await sending is True
    await slack.settle()
    row = await incident(slack)
    assert row.next_update_due_at == snoozed_until
    assert row.nudge_claimed_by is None and row.nudges_missed == 1
    assert len(nudges(slack, channel)) == 1
    await slack.command("reminders", channel=channel.id)
    assert "Next reminder in 30m" in slack.ephemeral_texts(ALICE)[-1]  # 29m 55s, rounded
    assert await tick(slack, clock, 29) == 0
    assert await tick(slack, clock, 1) == 1


@pytest.mark.parametrize(
    ("command", "due_after"),
    [
        ("update rolled back the canary", timedelta(minutes=15)),
        ("severity P2", timedelta(minutes=30)),
    ],
)
async def test_an_update_or_severity_change_made_while_a_reminder_is_in_flight_stands(
    slack: Harness, clock: ManualClock, command: str, due_after: timedelta
) -> None:
    channel = await declare(slack)
    incident_id = (await incident(slack)).id
    clock.advance(timedelta(minutes=15))
    held = slack.emulator.hold("chat.postMessage")
    sending = asyncio.create_task(slack.app.services.reminders.send(incident_id))
    await held.arrived.wait()
    clock.advance(timedelta(seconds=5))
    retimed = clock.now() + due_after
    await recorded(slack, channel.id, command, retimed)
    clock.advance(timedelta(seconds=5))
    held.release()
    assert await sending is True
    await slack.settle()
    row = await incident(slack)
    assert row.next_update_due_at == retimed and row.nudge_claimed_by is None


async def test_a_reminder_send_with_nothing_crossing_it_reschedules(
    slack: Harness, clock: ManualClock
) -> None:
    await declare(slack)
    assert await tick(slack, clock, 15) == 1
    row = await incident(slack)
    assert row.next_update_due_at == clock.now() + timedelta(minutes=15)
    assert row.nudge_claimed_by is None and row.nudge_claimed_until is None


def escalated(slack: Harness, channel_id: str) -> list[bool]:
    return ["escalated to the broadcast channel" in t for t in nudges_in(slack, channel_id)]


def nudges_in(slack: Harness, channel_id: str) -> list[str]:
    return [t for t in slack.texts(channel_id) if "a status update is due" in t]


async def test_a_severity_change_resets_the_unanswered_count(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack, "P1")
    assert await tick(slack, clock, 15) == 1
    assert await tick(slack, clock, 15) == 1
    assert (await incident(slack)).nudges_missed == 2
    await slack.command("severity P0", channel=channel.id)
    assert (await incident(slack)).nudges_missed == 0
    assert await tick(slack, clock, 15) == 1
    assert escalated(slack, channel.id) == [False, False, False]


async def test_a_reopen_resets_the_count_and_is_announced(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack, "P1")
    assert await tick(slack, clock, 15) == 1
    assert await tick(slack, clock, 15) == 1
    await slack.command("resolve rolled back", channel=channel.id)
    await slack.command("status investigating", channel=channel.id)
    row = await incident(slack)
    assert row.nudges_missed == 0 and row.status == "investigating"
    broadcast = slack.texts(slack.announce)
    assert "*Resolved:*" in broadcast[-2]
    assert broadcast[-1] == (
        f":arrows_counterclockwise: *Re-opened:* <#{channel.id}> checkout errors "
        f"(P1) is *investigating* again, by <@{ALICE}>."
    )
    assert "re-opened the incident" in slack.texts(channel.id)[-1]
    assert await tick(slack, clock, 15) == 1
    assert escalated(slack, channel.id) == [False, False, False]


async def test_a_severity_change_keeps_an_active_snooze(slack: Harness, clock: ManualClock) -> None:
    channel = await declare(slack, "P2")
    await slack.command("snooze 1h", channel=channel.id)
    snoozed_until = clock.now() + timedelta(hours=1)
    clock.advance(timedelta(minutes=5))
    await slack.command("severity P1", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == snoozed_until
    assert slack.ephemeral_texts(ALICE)[-1] == "Update reminders stay snoozed until 10:00 UTC."
    await slack.command("reminders", channel=channel.id)
    assert "Next reminder in 55m (10:00 UTC, snoozed)" in slack.ephemeral_texts(ALICE)[-1]
    assert await tick(slack, clock, 54) == 0
    assert await tick(slack, clock, 1) == 1
    # Once the snooze has run out, reminders follow the new severity's cadence.
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=15)


async def test_a_snooze_shorter_than_the_new_cadence_gives_way_silently(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack, "P1")
    await slack.command("snooze 5m", channel=channel.id)
    answers = len(slack.ephemeral_texts(ALICE))
    await slack.command("severity P2", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=30)
    assert len(slack.ephemeral_texts(ALICE)) == answers


async def test_a_due_or_overdue_reminder_shows_now(slack: Harness, clock: ManualClock) -> None:
    channel = await declare(slack, "P1")

    async def shown_after(delta: timedelta) -> str:
        clock.advance(delta)
        await slack.command("reminders", channel=channel.id)
        return slack.ephemeral_texts(ALICE)[-1]

    assert "Next reminder in 20s (09:15 UTC)" in await shown_after(
        timedelta(minutes=14, seconds=40)
    )
    assert "Next reminder now (09:15 UTC)" in await shown_after(timedelta(seconds=19.5))
    assert "Next reminder now (09:15 UTC)" in await shown_after(timedelta(minutes=2))  # overdue
