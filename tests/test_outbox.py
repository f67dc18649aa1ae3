"""Messages Slack can never accept, and a storm of 429s: order per destination channel.

One destination that refuses messages (a missing broadcast channel, an archived
incident channel, a message Slack rejects) must not silence another; the failure
is recorded, reported once where people look, told to the requester instead of
"will retry", and counted in /metrics. Transient failures are retried in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.incidents.outbox import CLAIM_TTL, Outbox
from bot.metrics import Metrics
from emulator.models import Channel
from storage import outbox as store
from storage.models import Event, OutboxMessage
from tests import test_reminders
from tests.harness import ALICE, BOB, Harness, running_firebreak
from tests.test_reminders import ManualClock

# The movable clock of the reminder tests.
clock = test_reminders.clock


@pytest.fixture
async def missing_broadcast(database_url: str, clock: ManualClock) -> AsyncIterator[Harness]:
    """FIREBREAK_ANNOUNCE_CHANNEL misspelled, as a new user would."""
    async with running_firebreak(
        database_url, clock=clock, FIREBREAK_ANNOUNCE_CHANNEL="no-such-channel"
    ) as harness:
        await harness.app.scheduler.shutdown()
        yield harness


@pytest.fixture
async def slack(database_url: str, clock: ManualClock) -> AsyncIterator[Harness]:
    async with running_firebreak(database_url, clock=clock) as harness:
        # These tests send due reminders themselves, at the times they choose.
        await harness.app.scheduler.shutdown()
        yield harness


async def replies(slack: Harness, text: str, channel: str) -> str:
    """The ephemerals the command's author got for `text`."""
    before = len(slack.workspace.ephemerals(ALICE))
    await slack.command(text, channel=channel)
    return "\n".join(str(e.get("text")) for e in slack.workspace.ephemerals(ALICE)[before:])


async def declared(slack: Harness, title: str = "checkout errors") -> tuple[Channel, str]:
    before = len(slack.workspace.ephemerals(ALICE))
    await slack.command(f"declare P1 {title}")
    reply = "\n".join(str(e.get("text")) for e in slack.workspace.ephemerals(ALICE)[before:])
    return slack.only_incident_channel(), reply


async def rows(slack: Harness) -> list[OutboxMessage]:
    return await slack.app.services.db.run(
        lambda s: list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    )


async def failures(slack: Harness) -> list[Event]:
    return await slack.app.services.db.run(
        lambda s: list(
            s.scalars(select(Event).where(Event.type == "delivery_failed").order_by(Event.id))
        )
    )


async def undeliverable_metric(slack: Harness, reason: str) -> float:
    url = slack.driver.app_url.replace("/slack/events", "/metrics")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    prefix = f'firebreak_undeliverable_messages_total{{reason="{reason}"}} '
    values = [float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


async def due_reminders(slack: Harness, clock: ManualClock, minutes: float) -> int:
    clock.advance(timedelta(minutes=minutes))
    sent = await slack.app.services.reminders.send_due()
    await slack.settle()
    return sent


def notices(texts: list[str], needle: str) -> list[str]:
    return [t for t in texts if needle in t]


async def test_a_missing_broadcast_channel_does_not_silence_the_incident_channel(
    missing_broadcast: Harness, clock: ManualClock
) -> None:
    slack = missing_broadcast
    channel, reply = await declared(slack)
    assert "Declared *P1* incident" in reply
    assert "could not post it in #no-such-channel" in reply, reply
    assert "Set FIREBREAK_ANNOUNCE_CHANNEL or create it" in reply and "will retry" not in reply

    # The update reaches the incident channel with the command itself: no sweep, no wait.
    reply = await replies(slack, "update Rolled back, watching error rate", channel.id)
    assert sum("Rolled back, watching error rate" in t for t in slack.texts(channel.id)) == 1
    assert "the channel does not exist" in reply and "will not be retried" in reply, reply
    assert "will retry" not in reply

    # So do reminders, one cadence after the update.
    assert await due_reminders(slack, clock, 15) == 1
    assert len(notices(slack.texts(channel.id), "a status update is due")) == 1

    # Reported once in the incident channel, though three messages failed.
    expected = (
        "Could not announce this incident in #no-such-channel: the channel does not exist "
        "(or is private and Firebreak is not in it). Set FIREBREAK_ANNOUNCE_CHANNEL or create it."
    )
    assert notices(slack.texts(channel.id), "Could not announce") == [f":warning: {expected}"]
    await replies(slack, "resolve rolled back", channel.id)
    assert len(notices(slack.texts(channel.id), "Could not announce")) == 1

    queued = [r for r in await rows(slack) if r.channel == "no-such-channel"]
    assert len(queued) == 3  # announcement, update, resolved
    assert all(r.failed_at and r.last_error == "channel_not_found" for r in queued)
    assert not [r for r in await rows(slack) if r.delivered_at is None and r.failed_at is None]
    events = await failures(slack)
    assert [e.payload["reason"] for e in events] == ["channel_not_found"] * 3
    assert [e.payload["reported"] for e in events] == [True, False, False]
    assert await undeliverable_metric(slack, "channel_not_found") == 3

    # The post-mortem shows it.
    markdown = await slack.app.services.postmortems.render(channel.name, "md")
    assert "could not post a message in #no-such-channel" in markdown, markdown


async def test_an_archived_incident_channel(slack: Harness, clock: ManualClock) -> None:
    """Archived while the incident is open: a message queued for it is given up and
    said once in the broadcast channel; the broadcast copies still go out; reminders
    stop nudging there and resume on time once the channel is unarchived."""
    channel, _ = await declared(slack)
    channel.archived = True  # someone archived it; a command already sent still arrives

    reply = await replies(slack, "update failing over to the standby", channel.id)
    assert "could not post it in" in reply and "the channel is archived" in reply, reply
    assert "will retry" not in reply
    broadcast = slack.texts(slack.announce)
    assert sum("failing over to the standby" in t for t in broadcast) == 1
    said = notices(broadcast, "Firebreak cannot post in")
    assert len(said) == 1 and f"<#{channel.id}>" in said[0], said
    assert "archived while the incident is still open" in said[0]

    # The reminder: not retried every few seconds, and not said again.
    posts_before = slack.workspace.count("chat.postMessage", ok=False)
    for _ in range(3):
        assert await due_reminders(slack, clock, 15) == 0
    assert slack.workspace.count("chat.postMessage", ok=False) - posts_before == 3
    assert len(notices(slack.texts(slack.announce), "Firebreak cannot post in")) == 1
    whats = [e.payload["what"] for e in await failures(slack)]
    assert whats == ["post a message"]  # the reminder's failure is the same, already said

    channel.archived = False
    assert await due_reminders(slack, clock, 15) == 1
    nudge = notices(slack.texts(channel.id), "a status update is due")
    assert len(nudge) == 1 and "Firebreak was unavailable" not in nudge[0], nudge


async def test_reminders_into_an_archived_channel_say_so_once(
    slack: Harness, clock: ManualClock
) -> None:
    channel, _ = await declared(slack)
    channel.archived = True
    for _ in range(4):
        assert await due_reminders(slack, clock, 15) == 0
    said = notices(slack.texts(slack.announce), "Firebreak cannot post in")
    assert len(said) == 1 and "the channel is archived" in said[0], said
    events = await failures(slack)
    assert [(e.payload["what"], e.payload["reason"]) for e in events] == [
        ("post the update reminder", "is_archived")
    ]
    assert await undeliverable_metric(slack, "is_archived") == 4

    channel.archived = False
    assert await due_reminders(slack, clock, 15) == 1
    [nudge] = notices(slack.texts(channel.id), "a status update is due")
    assert "fell due while Firebreak was unavailable" not in nudge


async def test_a_message_slack_rejects_as_invalid_blocks(slack: Harness) -> None:
    channel, _ = await declared(slack)
    slack.emulator.inject_fault("chat.postMessage", error="invalid_blocks")
    reply = await replies(slack, "note pods OOMKilled", channel.id)
    assert "Slack rejected the message's layout (`invalid_blocks`)" in reply, reply
    assert "will not be retried" in reply and "will retry" not in reply
    said = notices(slack.texts(channel.id), "could not post a message")
    assert len(said) == 1 and "invalid_blocks" in said[0], said

    # The channel is not held back: the next message goes out at once.
    assert await replies(slack, "note rolled back", channel.id) == ""
    assert any("rolled back" in t for t in slack.texts(channel.id))
    [failed] = [r for r in await rows(slack) if r.failed_at is not None]
    assert "pods OOMKilled" in failed.text and failed.last_error == "invalid_blocks"
    assert await undeliverable_metric(slack, "invalid_blocks") == 1


async def test_a_storm_of_429s_loses_nothing_and_keeps_order_per_channel(
    slack: Harness,
) -> None:
    """Slack's one post per second per channel, plus a burst of 429s: concurrent updates
    are retried, none is lost or doubled, and each channel shows them in order."""
    channel, _ = await declared(slack)
    slack.emulator.set_channel_post_limit(1)
    slack.emulator.inject_fault("chat.postMessage", status=429, retry_after=1, count=6)
    texts = [f"storm update {n:02d}" for n in range(8)]
    for text in texts:  # acked at once; the work runs concurrently in the background
        await slack.driver.slash_command(ALICE, channel.id, f"update {text}")
    await slack.settle()
    for _ in range(20):  # the sweep, with each backoff over (the clock is the test's)
        pending = [r for r in await rows(slack) if r.delivered_at is None]
        if not pending:
            break
        assert not [r for r in pending if r.failed_at is not None]  # transient: never given up
        await slack.app.services.db.run(_all_due_now)
        await slack.app.services.sweep()
    assert [r for r in await rows(slack) if r.delivered_at is None] == []
    assert slack.workspace.count("chat.postMessage", ok=False) >= 6

    events = await slack.app.services.db.run(
        lambda s: [
            e.payload["text"]
            for e in s.scalars(select(Event).where(Event.type == "update").order_by(Event.id))
        ]
    )
    assert sorted(events) == texts
    for where in (channel.id, slack.announce):
        shown = [text for t in slack.texts(where) for text in texts if text in t]
        assert shown == events, (where, shown)  # each once, in the order they were saved


def _all_due_now(session) -> None:  # type: ignore[no-untyped-def]
    for row in session.scalars(select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))):
        row.next_attempt_at = row.created_at


async def test_an_escalation_queued_many_times_posts_once(
    database_url: str, clock: ManualClock
) -> None:
    """The broadcast channel is held (a replica stuck on a row); reminders keep escalating
    meanwhile. When it frees, one escalation goes out, not one per reminder."""
    async with running_firebreak(
        database_url, clock=clock, FIREBREAK_NUDGE_ESCALATE_AFTER="1"
    ) as slack:
        await slack.app.scheduler.shutdown()
        channel, _ = await declared(slack)
        # Taken on, so the missed response target adds no broadcast of its own here.
        await slack.command(f"commander <@{BOB}>", channel=channel.id)
        db = slack.app.services.db

        def stuck_broadcast_post(session) -> int:  # type: ignore[no-untyped-def]
            incident_id = session.scalar(select(OutboxMessage.incident_id))
            row = store.enqueue(
                session, incident_id, "post", clock.now(), channel="incidents", text="held"
            )
            session.flush()
            return int(row.id)

        held = await db.run(stuck_broadcast_post)
        assert await db.run(store.claim, held, "stuck-replica", clock.now(), timedelta(hours=2))
        for _ in range(4):
            assert await due_reminders(slack, clock, 15) == 1
        broadcast = slack.texts(slack.announce)
        assert notices(broadcast, "status reminders unanswered") == []  # all held back

        clock.advance(timedelta(hours=2))  # the stuck claim lapses
        await slack.app.services.sweep()
        broadcast = slack.texts(slack.announce)
        assert broadcast[-2] == "held"
        escalations = notices(broadcast, "status reminders unanswered")
        assert len(escalations) == 1 and "3 status reminders unanswered" in escalations[0]
        superseded = [r for r in await rows(slack) if r.last_error == "superseded"]
        assert len(superseded) == 2


async def queue_post(slack: Harness, channel: str, text: str, at: datetime) -> int:
    def add(session) -> int:  # type: ignore[no-untyped-def]
        incident_id = session.scalar(select(OutboxMessage.incident_id))
        row = store.enqueue(session, incident_id, "post", at, channel=channel, text=text)
        session.flush()
        return int(row.id)

    return await slack.app.services.db.run(add)


def replica(slack: Harness, owner: str, **timing: Any) -> Outbox:
    """Another replica's outbox on the same database and Slack."""
    services = slack.app.services
    return Outbox(
        services.context,
        owner=owner,
        announce_channel="incidents",
        metrics=Metrics(),
        **timing,
    )


async def test_a_claim_outlives_a_retry_after_longer_than_itself(database_url: str) -> None:
    """Replica A's post draws a 429 whose Retry-After (3 s) is three times its claim
    (1 s). A keeps renewing the claim while slack_sdk waits, so replica B, delivering all
    the while, never takes the row over: the message is posted once."""
    async with running_firebreak(database_url) as slack:  # the real clock
        await slack.command("declare P2 search slow")
        channel = slack.only_incident_channel()
        await slack.app.services.sweep()  # the declare's messages are all out
        assert [r for r in await rows(slack) if r.delivered_at is None] == []
        a = replica(slack, "replica-a", claim_ttl=timedelta(seconds=1), renew_seconds=0.2)
        b = replica(slack, "replica-b")
        row = await queue_post(slack, channel.id, "posted once", slack.app.services.clock.now())
        slack.emulator.inject_fault("chat.postMessage", status=429, retry_after=3)
        sending = asyncio.ensure_future(a.deliver())
        while not [
            c for c in slack.workspace.calls("chat.postMessage") if c.error == "ratelimited"
        ]:
            await asyncio.sleep(0.02)
        while not sending.done():  # B tries for the whole wait, past A's claim length
            assert (await b.deliver()).delivered == 0
            await asyncio.sleep(0.1)
        assert (await sending).delivered == 1
        assert sum("posted once" in t for t in slack.texts(channel.id)) == 1
        [stored] = [r for r in await rows(slack) if r.id == row]
        assert stored.delivered_at is not None


async def test_a_dead_holder_is_taken_over_within_seconds(
    slack: Harness, clock: ManualClock
) -> None:
    """A replica died holding a row of the incident channel: the next command waits for
    the claim to lapse (seconds, not a minute), takes the row over and sends both."""
    channel, _ = await declared(slack)
    held = await queue_post(slack, channel.id, "sent by the dead replica", clock.now())
    assert await slack.app.services.db.run(
        store.claim, held, "dead-replica", clock.now(), CLAIM_TTL
    )
    assert timedelta(seconds=10) >= CLAIM_TTL
    command = asyncio.ensure_future(replies(slack, "note taking over", channel.id))
    await asyncio.sleep(0.5)
    assert not any("taking over" in t for t in slack.texts(channel.id))  # queued behind it
    clock.advance(CLAIM_TTL + timedelta(seconds=1))
    assert await command == ""
    texts = slack.texts(channel.id)
    assert sum("sent by the dead replica" in t for t in texts) == 1
    assert sum("taking over" in t for t in texts) == 1
    assert texts.index(next(t for t in texts if "dead replica" in t)) < texts.index(
        next(t for t in texts if "taking over" in t)
    )


async def test_the_answer_says_another_process_is_sending(
    slack: Harness, clock: ManualClock
) -> None:
    """A live replica holds the channel's head row longer than the requester is kept
    waiting: the answer says so, not that Slack refused anything."""
    channel, _ = await declared(slack)
    held = await queue_post(slack, channel.id, "being sent elsewhere", clock.now())
    assert await slack.app.services.db.run(
        store.claim, held, "live-replica", clock.now(), CLAIM_TTL
    )
    mine = await queue_post(slack, channel.id, "behind it", clock.now())
    answer = await replica(slack, "replica-b", settle_wait=0.3).settle(0, [mine])
    assert "another Firebreak process is sending" in answer, answer
    assert "Slack did not take" not in answer and "queued" not in answer


async def test_not_in_a_channel_it_cannot_join(slack: Harness) -> None:
    """The bot is not in the broadcast channel and Slack refuses the join (a private
    channel, say): `not_in_channel` is permanent, said once, with what to do."""
    slack.emulator.inject_fault(
        "conversations.join", error="method_not_supported_for_channel_type", count=5
    )
    channel, reply = await declared(slack)
    assert "Firebreak is not in the channel and could not join it" in reply, reply
    said = notices(slack.texts(channel.id), "Could not announce this incident in #incidents")
    assert len(said) == 1 and "/invite @Firebreak" in said[0], said
    assert [e.payload["reason"] for e in await failures(slack)] == ["not_in_channel"]


async def test_a_revoked_token_is_not_retried(slack: Harness) -> None:
    """Nothing can reach Slack: no notice is attempted; the requester, the event log and
    /metrics say why."""
    channel, _ = await declared(slack)
    slack.emulator.inject_fault("chat.postMessage", error="token_revoked", count=2)
    reply = await replies(slack, "update still degraded", channel.id)
    assert "Slack refused Firebreak's token" in reply and "will retry" not in reply, reply
    pending = [r for r in await rows(slack) if r.delivered_at is None and r.failed_at is None]
    assert pending == []
    assert [e.payload["reported"] for e in await failures(slack)] == [False, False]
    assert await undeliverable_metric(slack, "token_revoked") == 2
