"""Status-update nudges, driven by a movable clock (no sleeping for minutes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.incidents.reminders import CLAIM_TTL
from bot.messages import Card
from emulator.models import Channel
from storage import reminders as reminder_store
from storage.models import Event, Incident
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self._now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def slack(database_url: str, clock: ManualClock) -> AsyncIterator[Harness]:
    async with running_firebreak(database_url, clock=clock) as harness:
        # These tests send due nudges themselves, at the times they choose.
        await harness.app.scheduler.shutdown()
        yield harness


async def incident(slack: Harness) -> Incident:
    return await slack.app.services.db.run(lambda s: s.scalars(select(Incident)).one())


async def event_log(slack: Harness, kind: str) -> list[Event]:
    return await slack.app.services.db.run(
        lambda s: list(s.scalars(select(Event).where(Event.type == kind).order_by(Event.id)))
    )


def nudges(slack: Harness, channel: Channel) -> list[str]:
    return [t for t in slack.texts(channel.id) if "a status update is due" in t]


async def declare(slack: Harness, severity: str = "P1") -> Channel:
    await slack.command(f"declare {severity} checkout errors")
    return slack.only_incident_channel()


async def tick(slack: Harness, clock: ManualClock, minutes: float) -> int:
    clock.advance(timedelta(minutes=minutes))
    sent = await slack.app.services.reminders.send_due()
    await slack.settle()
    return sent


@pytest.mark.parametrize(("severity", "cadence"), [("P0", 15), ("P1", 15), ("P2", 30)])
async def test_cadence_per_severity(
    slack: Harness, clock: ManualClock, severity: str, cadence: int
) -> None:
    await declare(slack, severity)
    row = await incident(slack)
    assert row.next_update_due_at == row.declared_at + timedelta(minutes=cadence)
    assert await tick(slack, clock, cadence - 1) == 0
    assert await tick(slack, clock, 2) == 1


async def test_p3_has_no_reminders(slack: Harness, clock: ManualClock) -> None:
    channel = await declare(slack, "P3")
    row = await incident(slack)
    # Only its response target (4 hours) is watched, until someone takes it on.
    assert row.next_update_due_at == row.declared_at + timedelta(hours=4)
    await slack.command(f"commander <@{BOB}>", channel=channel.id)
    assert await tick(slack, clock, 600) == 0
    assert (await incident(slack)).next_update_due_at is None
    await slack.command("reminders", channel=channel.id)
    assert "P3 incidents have no update reminders" in slack.ephemeral_texts(ALICE)[-1]


async def test_nudge_mentions_the_commander_quotes_the_update_and_resets(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack)
    await slack.command("commander <@U0BOB|bob>", channel=channel.id)
    clock.advance(timedelta(minutes=5))
    await slack.command("update rolled back the canary", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=15)

    assert await tick(slack, clock, 14) == 0  # the update reset the clock
    assert await tick(slack, clock, 1) == 1
    [nudge] = nudges(slack, channel)
    assert f"<@{BOB}>" in nudge and "15m since the last one" in nudge
    assert "> rolled back the canary" in nudge
    message = next(m for m in slack.workspace.messages(channel.id) if m.get("text") == nudge)
    assert message["blocks"][1]["elements"][0]["text"]["text"] == "Post update"
    [event] = await event_log(slack, "nudge")
    assert event.payload["late"] is False and event.payload["escalated"] is False
    # Sent once: nothing more until a full cadence has passed again.
    assert await tick(slack, clock, 1) == 0


async def test_severity_change_retimes_and_resolve_stops(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack, "P2")
    # Taken on: its response target (test_response_time.py) no longer sets the time.
    await slack.command(f"commander <@{BOB}>", channel=channel.id)
    clock.advance(timedelta(minutes=10))
    await slack.command("severity P1", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=15)
    await slack.command("resolve fixed", channel=channel.id)
    assert (await incident(slack)).next_update_due_at is None
    assert await tick(slack, clock, 120) == 0
    await slack.command("status monitoring", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=15)


async def test_escalation_after_unanswered_nudges(slack: Harness, clock: ManualClock) -> None:
    channel = await declare(slack)
    await slack.command("comms <@U0CAROL>", channel=channel.id)
    for _ in range(3):
        assert await tick(slack, clock, 16) == 1
    first, second, third = nudges(slack, channel)
    assert "escalated" not in first and "escalated" not in second
    assert f"<@{CAROL}>" in third and "escalated" in third
    assert any("status reminders unanswered" in t for t in slack.texts(slack.announce))
    assert [e.payload["escalated"] for e in await event_log(slack, "nudge")] == [False, False, True]
    # An update ends the escalation.
    await slack.command("update still digging", channel=channel.id)
    assert await tick(slack, clock, 16) == 1
    assert "escalated" not in nudges(slack, channel)[-1]


async def test_snooze_is_bounded_and_logged(slack: Harness, clock: ManualClock) -> None:
    channel = await declare(slack)
    await slack.command("snooze 3h", channel=channel.id)
    assert "at most 2h" in slack.ephemeral_texts(ALICE)[-1]
    await slack.command("snooze 45m", channel=channel.id)
    assert (await incident(slack)).next_update_due_at == clock.now() + timedelta(minutes=45)
    assert any("snoozed update reminders for 45m" in t for t in slack.texts(channel.id))
    assert await tick(slack, clock, 30) == 0
    assert await tick(slack, clock, 16) == 1
    [snooze] = await event_log(slack, "snooze")
    assert snooze.actor == ALICE and snooze.payload["duration"] == "45m"
    await slack.command("reminders", channel=channel.id)
    assert "every 15m for P1" in slack.ephemeral_texts(ALICE)[-1]


async def test_snooze_takes_durations_as_the_bot_writes_them(
    slack: Harness, clock: ManualClock
) -> None:
    """`1m 30s` and `1h 5m` (how the bot itself shows durations) are accepted."""
    channel = await declare(slack)
    for typed, delta in (("1m 30s", timedelta(seconds=90)), ("1h 5m", timedelta(minutes=65))):
        await slack.command(f"snooze {typed}", channel=channel.id)
        assert (await incident(slack)).next_update_due_at == clock.now() + delta


async def test_post_update_button_opens_a_prefilled_modal(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack)
    await tick(slack, clock, 16)
    nudge = next(
        m
        for m in slack.workspace.messages(channel.id)
        if "status update is due" in str(m.get("text"))
    )
    await slack.driver.click_button(BOB, channel.id, nudge["ts"], "nudge:post_update")
    await slack.settle()
    [view] = slack.workspace.open_views(BOB)
    status_block = view["blocks"][0]
    assert status_block["element"]["initial_option"]["value"] == "investigating"
    await slack.driver.submit_view(
        BOB, view["id"], {"status": "identified", "update": "found the bad deploy"}
    )
    await slack.settle()
    row = await incident(slack)
    assert row.status == "identified" and row.last_update_text == "found the bad deploy"
    assert row.nudges_missed == 0
    assert any("found the bad deploy" in t for t in slack.texts(slack.announce))


async def test_rate_limit_storm_loses_and_doubles_nothing(
    slack: Harness, clock: ManualClock
) -> None:
    channel = await declare(slack)
    slack.emulator.inject_fault("chat.postMessage", status=429, retry_after=0, count=40)
    assert await tick(slack, clock, 16) == 0  # every retry hit a 429
    failures = await event_log(slack, "nudge_failed")
    assert failures and failures[0].payload["error"] == "ratelimited"
    assert nudges(slack, channel) == []
    slack.emulator.clear_faults()
    assert await tick(slack, clock, 0) == 0  # backoff: not before the retry time
    assert await tick(slack, clock, 1) == 1
    assert await tick(slack, clock, 1) == 0
    assert len(nudges(slack, channel)) == 1
    assert len(await event_log(slack, "nudge")) == 1


async def test_a_stalled_nudge_holder_cannot_record_its_send(
    slack: Harness, clock: ManualClock
) -> None:
    """A replica claims a due nudge and stalls past its claim; another replica takes it
    over and sends it. The first one's late record, and its late release, are refused
    (fenced by the claim's token): one nudge in the log, one missed reminder."""
    channel = await declare(slack)
    clock.advance(timedelta(minutes=16))
    db, reminders = slack.app.services.db, slack.app.services.reminders
    row = await incident(slack)
    stalled = await db.run(reminder_store.claim, row.id, "replica-a", clock.now(), CLAIM_TTL)
    assert stalled is not None

    clock.advance(CLAIM_TTL + timedelta(seconds=1))
    assert await reminders.send(row.id)  # replica B: the claim lapsed, B sends
    await slack.settle()
    assert len(nudges(slack, channel)) == 1

    # Replica A wakes up and records what it was doing; both writes are refused.
    assert not await db.run(
        reminders._sent, row.id, stalled, False, False, False, row.last_update_at
    )
    await db.run(reminders._failed, row.id, stalled.token, "ratelimited", clock.now())
    assert len(await event_log(slack, "nudge")) == 1
    assert await event_log(slack, "nudge_failed") == []
    after = await incident(slack)
    assert after.nudges_missed == 1 and after.next_update_due_at == clock.now() + timedelta(
        minutes=15
    )


async def test_a_reminder_whose_answer_was_lost_is_not_posted_twice(
    slack: Harness, clock: ManualClock
) -> None:
    """Slack took the reminder but its answer never came back (a timeout): the send is
    released for a retry, and the retry finds the reminder in the channel by its marker
    instead of posting it a second time."""
    channel = await declare(slack)
    clock.advance(timedelta(minutes=16))
    db, reminders = slack.app.services.db, slack.app.services.reminders
    row = await incident(slack)
    claimed = await db.run(reminder_store.claim, row.id, "replica-a", clock.now(), CLAIM_TTL)
    assert claimed is not None
    marker = f"fb-nudge-{row.id}-{int(claimed.due_at.timestamp())}"
    text = "@alice, a status update is due: 16m since the last one."
    await slack.app.services.chat.post(channel.id, Card.text(text, marker))
    retry_at = clock.now() + timedelta(seconds=2)
    await db.run(reminders._failed, row.id, claimed.token, "timeout", retry_at)
    clock.advance(timedelta(seconds=3))
    assert await reminders.send(row.id)
    await slack.settle()
    assert len(nudges(slack, channel)) == 1
    assert len(await event_log(slack, "nudge")) == 1
