"""The durable inbox, in process: acks stored by one app, replayed by another's worker.

`role="acks"` is `firebreak serve` with worker processes (it only acks and
stores); `role="worker"` is one `firebreak worker`. Both run here against the
same database and Slack emulator, so the test sees each side of the hand-off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select

from app.wiring import Firebreak, create_app
from bot.clock import Clock, OffsetClock
from bot.config import load_settings
from handlers.inbox import GroupCommit
from storage import incidents as incident_store
from storage.db import DatabaseUnavailable
from storage.inbox import Arrival, Claimed
from storage.models import HandledRequest, InboxRequest
from tests.harness import ALICE, BOT_TOKEN, SIGNING_SECRET, Harness, running_firebreak


@asynccontextmanager
async def worker(
    slack: Harness, database_url: str, clock: Clock | None = None
) -> AsyncIterator[Firebreak]:
    """A `firebreak worker` against the harness's database and emulator."""
    settings = load_settings(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.emulator.api_url,
            "DATABASE_URL": database_url,
        }
    )
    app = create_app(settings, clock=clock, role="worker")
    runner = web.AppRunner(app.web)
    await runner.setup()  # runs the start-up hooks: the inbox poll, reminders, sweep
    try:
        yield app
    finally:
        await runner.cleanup()


async def handled(app: Firebreak, timeout: float = 30.0) -> None:
    """Wait until the inbox is empty and the work it handed over has finished."""
    deadline = time.monotonic() + timeout
    while await app.inbox.waiting():
        assert time.monotonic() < deadline, "the inbox was not emptied"
        await asyncio.sleep(0.05)
    await app.background.drain()


def replies(slack: Harness, via: str) -> list[dict[str, Any]]:
    return [e for e in slack.workspace.ephemerals(ALICE) if e.get("via") == via]


async def test_an_acked_declare_waits_in_the_inbox_for_a_worker(database_url: str) -> None:
    async with running_firebreak(database_url, role="acks") as slack:
        response = await slack.driver.slash_command(ALICE, slack.general, "declare P1 cart down")
        assert response.status == 200 and "Declaring *P1*" in str(response.body)
        await slack.settle()
        # Acked and stored; nothing done, since no process here runs the work.
        assert await slack.app.inbox.waiting() == 1
        assert slack.incident_channels() == []

        async with worker(slack, database_url) as app:
            await handled(app)
            channel = slack.only_incident_channel()
            assert channel.name.endswith("-cart-down") and channel.pins
            assert len(await app.services.db.run(incident_store.open_incidents)) == 1
        # The declarer is answered once, through the command's response_url.
        [answer] = replies(slack, "response_url")
        assert answer["text"] == f"Declared *P1* incident <#{channel.id}>."
        assert answer["channel"] == slack.general
        assert replies(slack, "chat.postEphemeral") == []


async def test_after_30_minutes_the_declarer_is_answered_in_the_new_channel(
    database_url: str,
) -> None:
    """Slack takes a response_url for 30 minutes from the command; a replay later than
    that answers with an ephemeral message in the incident channel instead."""
    async with running_firebreak(database_url, role="acks") as slack:
        await slack.driver.slash_command(ALICE, slack.general, "declare P2 search slow")
        later = OffsetClock()
        later.advance(timedelta(minutes=31))
        async with worker(slack, database_url, clock=later) as app:
            await handled(app)
        channel = slack.only_incident_channel()
        assert replies(slack, "response_url") == []
        [answer] = replies(slack, "chat.postEphemeral")
        assert answer["channel"] == channel.id and "Declared *P2*" in answer["text"]


async def test_commands_and_clicks_are_replayed_through_the_listeners(database_url: str) -> None:
    """Slash commands and a checklist click: stored by the acks, done once by a worker."""
    async with running_firebreak(database_url, role="acks") as slack:
        await slack.driver.slash_command(ALICE, slack.general, "declare P1 api down")
        async with worker(slack, database_url) as app:
            await handled(app)
        channel = slack.only_incident_channel()
        for text in ("update rolling back", "severity P0", "note a note"):
            await slack.driver.slash_command(ALICE, channel.id, text)
        ts = channel.pins[0]["ts"]
        await slack.driver.toggle_checkbox(
            ALICE, channel.id, ts, "checklist:0:0", ["triage.acknowledge"]
        )
        await slack.driver.slash_command(ALICE, channel.id, "help")  # answered in the ack
        await slack.settle()
        assert await slack.app.inbox.waiting() == 4

        async with worker(slack, database_url) as app:
            await handled(app)
            events = await app.services.db.run(
                lambda s: [e.type for e in incident_store.events(s, 1)]
            )
        for kind in ("update", "severity", "note", "checklist_checked"):
            assert events.count(kind) == 1, (kind, events)
        assert sum("rolling back" in t for t in slack.texts(channel.id)) == 1


async def test_old_idempotency_keys_are_pruned(slack: Harness) -> None:
    db, now = slack.app.services.db, datetime.now(UTC)

    def add(session: Any, **ages: timedelta) -> None:
        for key, age in ages.items():
            session.add(HandledRequest(key=key, at=now - age))

    def keys(session: Any) -> set[str]:
        return set(session.scalars(select(HandledRequest.key)))

    await db.run(add, old=timedelta(hours=2), recent=timedelta(minutes=10))
    await slack.app.services.sweep()
    assert await db.run(keys) == {"recent"}

    # A request still waiting in the inbox keeps the keys from after its arrival.
    def waiting_request(session: Any) -> None:
        session.add(InboxRequest(body="", content_type="", received_at=now - timedelta(hours=3)))

    await db.run(add, older=timedelta(hours=2))
    await db.run(waiting_request)
    await slack.app.services.sweep()
    assert await db.run(keys) == {"recent", "older"}


async def test_acks_arriving_during_a_write_share_the_next_one() -> None:
    """Group commit: one write in flight; the acks that arrive meanwhile go in the next."""
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def write(arrivals: list[Arrival], limit: float) -> list[Claimed]:
        batches.append([a.body for a in arrivals])
        await release.wait()
        return [
            Claimed(n, 1, a.body, a.content_type, a.received_at, 1) for n, a in enumerate(arrivals)
        ]

    group = GroupCommit(write, limit=30)
    now = datetime.now(UTC)
    first = asyncio.ensure_future(group.add(Arrival("a", "", now)))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(group.add(Arrival(b, "", now))) for b in "bcd"]
    await asyncio.sleep(0)
    assert batches == [["a"]]
    release.set()
    stored = await asyncio.gather(first, *rest)
    assert batches == [["a"], ["b", "c", "d"]]
    assert [s.body for s in stored] == ["a", "b", "c", "d"]


async def test_an_ack_waits_for_the_inbox_at_most_its_limit() -> None:
    """A write that never ends fails every ack waiting on it, including the ones queued
    behind it, once the earliest one's time is up; none waits past its own limit."""
    never = asyncio.Event()

    async def write(arrivals: list[Arrival], limit: float) -> list[Claimed]:
        await asyncio.wait_for(never.wait(), limit)  # as Database.run_within gives up
        raise AssertionError("unreachable")

    group = GroupCommit(write, limit=0.2)
    now = datetime.now(UTC)
    first = asyncio.ensure_future(group.add(Arrival("a", "", now)))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(group.add(Arrival("b", "", now)))
    results = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert all(isinstance(r, TimeoutError | DatabaseUnavailable) for r in results), results
