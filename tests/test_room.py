"""The incident room kept live: Slack's events, delivered by the emulator as Slack does
(signed `event_callback` envelopes, retried with X-Slack-Retry-Num), through the real
Bolt app into the event log, once each; and the read-in for whoever joins."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import select

from app.socket_mode import InboxSocketModeHandler
from storage.models import Event
from tests.action_rig import Rig, engine_fixture, health_fixture, kube_fixture, rig_fixture  # noqa: F401
from tests.harness import ALICE, BOB, CAROL, Harness, manifest, running_firebreak


@pytest_asyncio.fixture(name="room")
async def room_fixture(database_url: str) -> AsyncIterator[Harness]:
    async with running_firebreak(database_url, events=True) as harness:
        await harness.command("declare P1 checkout returning 502s")
        yield harness


async def settled(room: Harness) -> None:
    """Every event delivered (retries included) and its recording done."""
    await room.emulator.events.settled()
    await room.settle()


async def recorded(room: Harness) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await room.app.services.db.run(
        lambda s: list(s.scalars(select(Event).order_by(Event.at, Event.id)))
    )
    return [(e.type, e.actor, e.payload) for e in rows if e.type.startswith("room.")]


async def test_messages_edits_deletions_replies_reactions_pins_and_joins_are_recorded(
    room: Harness,
) -> None:
    ws, channel = room.workspace, room.only_incident_channel().id
    await settled(room)
    ws.join_as_user(channel, BOB)
    first = ws.post_as_user(channel, ALICE, "checkout pods are crash-looping")["ts"]
    reply = ws.post_as_user(channel, BOB, "OOMKilled, see the limits", thread_ts=first)["ts"]
    wrong = ws.post_as_user(channel, BOB, "it is the databse")["ts"]
    ws.edit_as_user(channel, wrong, BOB, "it is the database")
    gone = ws.post_as_user(channel, ALICE, "ignore me")["ts"]
    ws.delete_as_user(channel, gone, ALICE)
    ws.add_reaction(channel, reply, "pushpin", ALICE)
    ws.add_reaction(channel, first, "eyes", CAROL)  # not a key moment: not recorded
    ws.add_reaction(channel, first, "stopwatch", CAROL)
    ws.pin_as_user(channel, wrong, CAROL)
    await settled(room)

    people = [(t, a, p) for t, a, p in await recorded(room) if a != ws.bot_user_id]
    assert [(t, a) for t, a, _ in people] == [
        ("room.joined", ALICE),  # the declarer, invited by Firebreak
        ("room.joined", BOB),
        ("room.message", ALICE),
        ("room.message", BOB),
        ("room.message", BOB),
        ("room.edited", BOB),
        ("room.message", ALICE),
        ("room.deleted", ALICE),
        ("room.reaction", ALICE),
        ("room.reaction", CAROL),
        ("room.pin", CAROL),
    ]
    assert people[3][2] == {"ts": reply, "text": "OOMKilled, see the limits", "thread_ts": first}
    assert people[5][2] == {"ts": wrong, "text": "it is the database"}
    assert people[7][2] == {"ts": gone}
    assert people[8][2] == {"ts": reply, "reaction": "pushpin"}
    assert people[9][2] == {"ts": first, "reaction": "stopwatch"}
    assert people[10][2] == {"ts": wrong}
    # Firebreak's own posts mirror the event log: Bolt drops their events (its
    # self-event filter), and the outbox knows their ts.
    assert not [t for t, a, _ in await recorded(room) if a == ws.bot_user_id]


async def test_a_retried_delivery_is_recorded_once(room: Harness) -> None:
    ws, channel = room.workspace, room.only_incident_channel().id
    ws.post_as_user(channel, ALICE, "first look: 502s since 14:02")
    await settled(room)
    [delivery] = [
        d
        for d in room.emulator.events.of_type("message")
        if d.body["event"].get("text", "").startswith("first look")
    ]
    assert delivery.attempts == ["ok"]
    for retry in (1, 2):  # Slack timed out waiting for our answer: the same event again
        answer = await room.driver.post(
            json.dumps(delivery.body),
            content_type="application/json",
            headers={"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert answer.status == 200
    await room.settle()
    said = [p for t, a, p in await recorded(room) if t == "room.message" and a == ALICE]
    assert len(said) == 1


async def test_unanswered_events_are_retried_with_the_retry_headers(room: Harness) -> None:
    events = room.emulator.events
    await settled(room)
    # The app refuses a bad signature (401): Slack retries three times, numbering them.
    events.subscribe(manifest_events_of(), request_url=room.driver.app_url, signing_secret="x")
    events.retry_delays = (0.0, 0.0, 0.0)
    room.workspace.post_as_user(room.only_incident_channel().id, ALICE, "lost")
    await settled(room)
    assert events.deliveries[-1].attempts == ["http_error"] * 4
    assert not [p for t, _, p in await recorded(room) if p.get("text") == "lost"]


def manifest_events_of() -> list[str]:
    return list(manifest()["settings"]["event_subscriptions"]["bot_events"])


async def test_each_person_joining_gets_the_read_in(room: Harness) -> None:
    channel = room.only_incident_channel().id
    await room.command("update Rolled back to 1.4.1, error rate falling", channel=channel)
    await settled(room)
    room.workspace.join_as_user(channel, CAROL)
    await settled(room)
    [read_in] = room.workspace.ephemerals(CAROL, channel)
    text = read_in["text"]
    assert "Read-in: checkout returning 502s" in text
    assert "*Severity:* P1 (SEV2, High)" in text and "*Status:* investigating" in text
    assert "Rolled back to 1.4.1, error rate falling" in text
    assert "*Open in " in text
    # A retried join delivery does not read them in twice.
    delivery = room.emulator.events.of_type("member_joined_channel")[-1]
    await room.driver.post(
        json.dumps(delivery.body),
        content_type="application/json",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    await room.settle()
    assert len(room.workspace.ephemerals(CAROL, channel)) == 1


async def test_events_over_socket_mode_are_recorded_once(tmp_path: Path) -> None:
    """The same events over Socket Mode: `events_api` envelopes on the WebSocket, through
    the inbox's handler, recorded once even when Slack sends one again as a retry."""
    app_token = "xapp-1-A0TEST-1-room"
    async with running_firebreak(f"sqlite:///{tmp_path / 'room.db'}", app_token=app_token) as room:
        handler = InboxSocketModeHandler(room.app, app_token)
        await handler.connect_async()
        try:
            room.emulator.events.subscribe(manifest_events_of(), socket_mode=True)
            await room.command("declare P2 search is slow")
            channel = room.only_incident_channel().id
            room.workspace.join_as_user(channel, BOB)
            ts = room.workspace.post_as_user(channel, BOB, "p99 at 4 s on search")["ts"]
            room.workspace.add_reaction(channel, ts, "pushpin", ALICE)
            await settled(room)
            said = room.emulator.events.of_type("message")[-1]
            ack = await room.emulator.socket_mode.send(
                "events_api", said.body, {"retry_attempt": 1, "retry_reason": "timeout"}
            )
            assert ack["envelope_id"]
            await room.settle()
        finally:
            await handler.close_async()
        rows = [(t, a) for t, a, _ in await recorded(room) if a != ALICE]
        assert rows == [("room.joined", BOB), ("room.message", BOB)]
        assert ("room.reaction", ALICE) in [(t, a) for t, a, _ in await recorded(room)]
        assert "Read-in: search is slow" in room.workspace.ephemerals(BOB, channel)[0]["text"]


async def test_the_summary_says_what_was_tried_and_only_in_an_incident_channel(
    rig: Rig,
) -> None:
    assert await rig.diag("pods checkout") == ""
    await rig.slack.command("summary", channel=rig.channel.id, user=BOB)
    text = rig.slack.ephemeral_texts(BOB)[-1]
    assert "*Tried so far:*" in text and "ran pods checkout" in text
    assert "2 pods: 1 Running, 1 CrashLoopBackOff" in text
    assert "commander _none_" in text
    await rig.slack.command("summary", channel=rig.slack.general, user=BOB)
    assert "only works in an incident channel" in rig.slack.ephemeral_texts(BOB)[-1]


async def test_secrets_said_in_the_room_are_masked_in_the_log_and_the_postmortem(
    room: Harness,
) -> None:
    ws, channel = room.workspace, room.only_incident_channel().id
    ws.post_as_user(channel, BOB, "try with DB_PASSWORD=hunter2hunter2 on the replica")
    await settled(room)
    [said] = [p for t, a, p in await recorded(room) if t == "room.message" and a == BOB]
    assert said["text"] == "try with DB_PASSWORD=*** on the replica"


async def test_a_private_incidents_room_is_recorded_too(database_url: str) -> None:
    """A private channel's messages come as `message.groups`, which the manifest asks for."""
    async with running_firebreak(database_url, events=True) as room:
        await room.command("declare P1 --private credentials leaked")
        ws, channel = room.workspace, room.only_incident_channel().id
        await settled(room)
        ws.post_as_user(channel, ALICE, "rotated the leaked key")
        await settled(room)
        messages = [(t, a, p.get("text")) for t, a, p in await recorded(room) if a == ALICE]
        assert ("room.message", ALICE, "rotated the leaked key") in messages
