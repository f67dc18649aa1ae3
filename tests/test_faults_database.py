"""Postgres going away in the middle of an incident, and coming back.

The shared Postgres server is never stopped: Firebreak reaches its own schema through
`tests/tcp_proxy.py`, and the proxy plays the outage. `cut()` drops every connection
and refuses new ones (a restart), `hold()` accepts connections and never answers
(a server still starting, or a black-holing firewall), `freeze()` stops the bytes on
connections already open (a server stuck on I/O). During the outage every command is
acked in time and answered with `bot.errors.DATABASE_DOWN`, and `/readyz` says 503;
after it, the same commands work and nothing was lost or done twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from bot.clock import OffsetClock
from bot.errors import DATABASE_DOWN
from emulator import AppResponse
from emulator.models import Channel
from storage.db import DatabaseUnavailable
from storage.models import Event, Incident, OutboxMessage
from tests.databases import fresh_database
from tests.harness import ALICE, Harness, running_firebreak
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


@dataclass
class Outage:
    slack: Harness
    proxy: TcpProxy
    clock: OffsetClock
    direct_url: str  # the same schema, not through the proxy: the test's own view

    @property
    def base(self) -> str:
        return self.slack.driver.app_url.removesuffix("/slack/events")

    async def ready(self) -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.base}/readyz") as response,
        ):
            return response.status

    async def command(self, text: str, channel: str, user: str = ALICE) -> tuple[AppResponse, str]:
        """Run a command and return its HTTP answer and the one reply the user then got."""
        before = len(self.slack.workspace.ephemerals(user))
        response = await self.slack.command(text, channel=channel, user=user)
        replies = [str(e.get("text")) for e in self.slack.workspace.ephemerals(user)[before:]]
        assert response.status == 200 and response.acked_in_time, response
        return response, "\n".join(replies)

    def rows(self, query: Callable[[Any], Any]) -> Any:
        engine = create_engine(self.direct_url)
        try:
            with engine.connect() as connection:
                return query(connection)
        finally:
            engine.dispose()

    def event_texts(self, kind: str) -> list[str]:
        def query(connection: Any) -> list[str]:
            rows = connection.execute(select(Event.payload).where(Event.type == kind))
            return [str(payload.get("text")) for (payload,) in rows]

        return self.rows(query)


@asynccontextmanager
async def outage_rig(tmp_path: Path) -> AsyncIterator[Outage]:
    with fresh_database("postgres", tmp_path) as direct_url:
        url = make_url(direct_url)
        async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port)
            clock = OffsetClock()
            async with running_firebreak(
                proxied.render_as_string(hide_password=False), clock=clock
            ) as slack:
                yield Outage(slack, proxy, clock, direct_url)


@pytest_asyncio.fixture
async def outage(tmp_path: Path) -> AsyncIterator[Outage]:
    async with outage_rig(tmp_path) as rig:
        yield rig


async def declared(outage: Outage, title: str = "checkout errors") -> Channel:
    await outage.slack.command(f"declare P1 {title}")
    return outage.slack.only_incident_channel()


def count(texts: list[str], needle: str) -> int:
    return sum(needle in t for t in texts)


# During the outage each of these gets DATABASE_DOWN; after it, the same text works.
CHANNEL_COMMANDS = [
    "update mitigation under way",
    "note saw replication lag",
    "severity P0",
    "status identified",
    "assign comms <@U0BOB|bob>",
    "action add a replica alert category=response due=7d",
    "snooze 10m",
    "reminders",
]


async def test_a_postgres_restart_mid_incident(outage: Outage) -> None:
    slack = outage.slack
    channel = await declared(outage)
    await outage.command("update before the restart", channel.id)
    assert await outage.ready() == 200

    await outage.proxy.cut()
    assert await outage.ready() == 503
    for text in [*CHANNEL_COMMANDS, "list", "postmortem", "close"]:
        _, reply = await outage.command(text, channel.id)
        assert reply == DATABASE_DOWN, (text, reply)
    _, reply = await outage.command("declare P2 search down", slack.general)
    assert DATABASE_DOWN in reply
    ts = channel.pins[0]["ts"]
    before = len(slack.workspace.ephemerals(ALICE))
    await slack.driver.toggle_checkbox(
        ALICE, channel.id, ts, "checklist:0:0", ["triage.acknowledge"]
    )
    await slack.settle()
    [tick_reply] = slack.workspace.ephemerals(ALICE)[before:]
    assert tick_reply["text"] == DATABASE_DOWN
    with pytest.raises(DatabaseUnavailable):
        await slack.app.services.sweep()  # the periodic sweep fails and is retried later

    await outage.proxy.restore()
    assert await outage.ready() == 200
    for text in CHANNEL_COMMANDS:
        _, reply = await outage.command(text, channel.id)
        assert DATABASE_DOWN not in reply and "went wrong" not in reply, (text, reply)
    await outage.command("declare P2 search down", slack.general)
    await slack.driver.toggle_checkbox(
        ALICE, channel.id, ts, "checklist:0:0", ["triage.acknowledge"]
    )
    await slack.settle()
    await slack.app.services.sweep()

    # Nothing from the outage was half-done, nothing after it was doubled.
    assert sorted(c.name.split("-", 2)[-1] for c in slack.incident_channels()) == [
        "checkout-errors",
        "search-down",
    ]
    assert outage.event_texts("update") == ["before the restart", "mitigation under way"]
    assert outage.event_texts("note") == ["saw replication lag"]
    texts, broadcast = slack.texts(channel.id), slack.texts(slack.announce)
    assert (
        count(texts, "mitigation under way") == 1 and count(broadcast, "mitigation under way") == 1
    )
    assert count(texts, "saw replication lag") == 1
    assert count(texts, "changed the severity") == 1
    assert count(texts, "add a replica alert") == 1

    def kinds(connection: Any) -> list[str]:
        return [k for (k,) in connection.execute(select(Event.type).order_by(Event.id))]

    events = outage.rows(kinds)
    for kind in ("severity", "status", "role", "action_item", "snooze", "checklist_checked"):
        assert events.count(kind) == 1, (kind, events)
    assert events.count("declared") == 2

    def undelivered(connection: Any) -> int:
        rows = connection.execute(
            select(OutboxMessage.id).where(OutboxMessage.delivered_at.is_(None))
        )
        return len(list(rows))

    assert outage.rows(undelivered) == 0


async def test_a_hanging_server_is_reported_in_time(outage: Outage) -> None:
    """Connections accepted and never answered end with connect_timeout (5 s), not never."""
    slack = outage.slack
    channel = await declared(outage)
    await outage.proxy.hold()
    started = time.monotonic()
    ready, (_, reply) = await asyncio.gather(
        outage.ready(), outage.command("note written while postgres hangs", channel.id)
    )
    assert ready == 503 and reply == DATABASE_DOWN
    assert time.monotonic() - started < 9

    await outage.proxy.restore()
    _, reply = await outage.command("note written after", channel.id)
    assert reply == ""
    assert outage.event_texts("note") == ["written after"]
    assert count(slack.texts(channel.id), "written after") == 1


async def test_a_frozen_connection_is_given_up_in_time(outage: Outage) -> None:
    """A server that stops answering on a connection already open (stuck on I/O, or a
    packet-dropping network) holds a query forever: the database deadline ends it."""
    slack = outage.slack
    channel = await declared(outage)
    slack.app.services.db.timeout = 3.0  # the default, 15 s, would make a slow test
    await outage.proxy.freeze()
    started = time.monotonic()
    _, reply = await outage.command("note written while postgres is frozen", channel.id)
    assert reply == DATABASE_DOWN
    assert time.monotonic() - started < 8

    await outage.proxy.restore()
    _, reply = await outage.command("note written after", channel.id)
    assert reply == ""
    # The abandoned transaction did not commit later on.
    assert outage.event_texts("note") == ["written after"]


async def test_lost_between_posting_and_recording(outage: Outage) -> None:
    """Postgres goes while Slack is taking an update: the update is saved and posted, so
    the user must not hear "nothing was changed" (and retry it), and the retry of the
    delivery must find the post instead of posting it again."""
    slack = outage.slack
    channel = await declared(outage)
    slack.emulator.inject_fault("chat.postMessage", delay=1.5)  # slow, then accepted
    sent = asyncio.ensure_future(
        slack.driver.slash_command(ALICE, channel.id, "update failing over to the replica")
    )

    def claimed(connection: Any) -> bool:
        rows = connection.execute(
            select(OutboxMessage.id).where(
                OutboxMessage.claimed_by.is_not(None), OutboxMessage.text.contains("failing over")
            )
        )
        return bool(list(rows))

    for _ in range(100):
        if outage.rows(claimed):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the update was never claimed for delivery")
    await outage.proxy.cut()
    assert (await sent).status == 200
    await slack.settle()
    reply = slack.ephemeral_texts(ALICE)[-1]
    assert "nothing was changed" not in reply, reply
    assert "saved" in reply.lower(), reply

    await outage.proxy.restore()
    outage.clock.advance(timedelta(minutes=2))  # past the delivery claim and its backoff
    await slack.app.services.sweep()
    assert count(slack.texts(channel.id), "failing over to the replica") == 1
    assert count(slack.texts(slack.announce), "failing over to the replica") == 1
    assert outage.event_texts("update") == ["failing over to the replica"]


async def test_lost_during_the_declare_saga(outage: Outage) -> None:
    """The incident row is written, then Postgres goes while Slack builds the channel:
    the user hears the incident exists, and once Postgres is back the sweep finishes
    it, with one channel, one checklist, one announcement."""
    slack = outage.slack
    slack.emulator.inject_fault("conversations.invite", delay=1.5)
    sent = asyncio.ensure_future(slack.driver.slash_command(ALICE, slack.general, "declare P1 db"))

    def created(connection: Any) -> bool:
        row = connection.execute(select(Incident.channel_id)).first()
        return row is not None and row[0] is not None

    for _ in range(100):
        if outage.rows(created):
            break
        await asyncio.sleep(0.05)
    await outage.proxy.cut()
    await sent
    await slack.settle()
    reply = slack.ephemeral_texts(ALICE)[-1]
    assert "nothing was changed" not in reply and "#1" in reply, reply

    await outage.proxy.restore()
    for _ in range(3):
        outage.clock.advance(timedelta(minutes=2))  # past the lease the lost saga held
        await slack.app.services.sweep()
    channel = slack.only_incident_channel()
    assert len(channel.pins) == 1
    assert len(slack.checklists(channel.id)) == 1
    assert len(slack.texts(slack.announce)) == 1

    def incident(connection: Any) -> tuple[bool, str | None]:
        return connection.execute(select(Incident.invited, Incident.checklist_ts)).one()

    invited, checklist_ts = outage.rows(incident)
    assert invited and checklist_ts == channel.pins[0]["ts"]
