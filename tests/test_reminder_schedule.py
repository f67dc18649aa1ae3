"""The next-due time under concurrent changes, severity changes and re-opening.

The clock is a `ManualClock` and the reminder send is held in flight by the
Slack emulator, so each interleaving is forced, never left to timing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests import test_reminders
from tests.harness import ALICE, Harness
from tests.test_reminders import ManualClock, declare, incident, nudges, tick

# The same movable clock, and the app with its scheduler stopped, as the other reminder tests.
clock = test_reminders.clock
slack = test_reminders.slack


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
    await slack.command("snooze 30m", channel=channel.id)
    snoozed_until = clock.now() + timedelta(minutes=30)
    assert (await incident(slack)).next_update_due_at == snoozed_until
    clock.advance(timedelta(seconds=5))
    held.release()  # the send finishes after the snooze
    assert await sending is True
    row = await incident(slack)
    assert row.next_update_due_at == snoozed_until
    assert row.nudge_claimed_by is None and row.nudges_missed == 1
    assert len(nudges(slack, channel)) == 1
    await slack.command("reminders", channel=channel.id)
    assert "Next reminder in 29m" in slack.ephemeral_texts(ALICE)[-1]
    assert await tick(slack, clock, 29) == 0
    assert await tick(slack, clock, 1) == 1


async def test_a_reminder_send_with_nothing_crossing_it_reschedules(
    slack: Harness, clock: ManualClock
) -> None:
    await declare(slack)
    assert await tick(slack, clock, 15) == 1
    row = await incident(slack)
    assert row.next_update_due_at == clock.now() + timedelta(minutes=15)
    assert row.nudge_claimed_by is None and row.nudge_claimed_until is None
