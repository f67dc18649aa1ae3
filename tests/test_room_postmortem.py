"""The post-mortem from the recorded room: no channel crawl while Firebreak listened, a
bounded crawl of the gap while it did not, and edits and deletions respected."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest_asyncio

from bot.clock import OffsetClock
from tests.harness import ALICE, BOB, CAROL, Harness, running_firebreak


@pytest_asyncio.fixture(name="room")
async def room_fixture(database_url: str) -> AsyncIterator[tuple[Harness, OffsetClock]]:
    clock = OffsetClock()
    async with running_firebreak(database_url, clock=clock, events=True) as harness:
        # A process counts as listening from the first event it hears.
        harness.workspace.post_as_user(harness.general, BOB, "anyone seeing checkout 502s?")
        await settled(harness)
        await harness.command("declare P1 checkout returning 502s")
        await settled(harness)
        yield harness, clock


async def settled(room: Harness) -> None:
    await room.emulator.events.settled()
    await room.settle()


async def close(room: Harness, channel: str) -> dict[str, Any]:
    await room.command("resolve Rolled back to 1.4.1", channel=channel)
    await room.command("close", channel=channel)
    return dict(json.loads(await room.app.services.postmortems.render("1", "json")))


def said(document: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(who, text, reply texts) of each person's message in the timeline."""
    return [
        (line["who"], line["text"], [r["text"] for r in line.get("replies", [])])
        for line in document["timeline"]
        if line["kind"] == "message" and not line.get("firebreak")
    ]


async def test_listened_all_along_no_history_is_read(
    room: tuple[Harness, OffsetClock],
) -> None:
    harness, _ = room
    ws, channel = harness.workspace, harness.only_incident_channel().id
    ws.join_as_user(channel, BOB)
    first = ws.post_as_user(channel, ALICE, "pods are crash-looping")["ts"]
    reply = ws.post_as_user(channel, BOB, "OOMKilled since the deploy", thread_ts=first)["ts"]
    typo = ws.post_as_user(channel, BOB, "limits too lwo")["ts"]
    ws.edit_as_user(channel, typo, BOB, "limits too low")
    oops = ws.post_as_user(channel, CAROL, "wrong channel, sorry")["ts"]
    ws.delete_as_user(channel, oops, CAROL)
    ws.add_reaction(channel, reply, "stopwatch", ALICE)
    ws.pin_as_user(channel, typo, ALICE)
    await settled(harness)
    document = await close(harness, channel)

    assert not [
        c.args for c in harness.workspace.calls("conversations.history") if "oldest" in c.args
    ]
    assert harness.workspace.count("conversations.replies") == 0
    assert said(document) == [
        ("Alice Example", "pods are crash-looping", ["OOMKilled since the deploy"]),
        ("Bob Example", "limits too low", []),
    ]
    assert [m["text"] for m in document["key_moments"]] == [
        "OOMKilled since the deploy",
        "limits too low",
    ]
    edited = next(line for line in document["timeline"] if line.get("ts") == typo)
    assert edited["edited"] is True
    assert "wrong channel" not in json.dumps(document)
    assert "Bob Example" in [p["name"] for p in document["participants"]]


async def test_a_gap_is_read_from_history_once_and_only_there(
    room: tuple[Harness, OffsetClock],
) -> None:
    harness, clock = room
    ws, channel = harness.workspace, harness.only_incident_channel().id
    events = harness.emulator.events
    ws.post_as_user(channel, ALICE, "before the outage")
    await settled(harness)

    def move(seconds: int) -> None:
        clock.advance(timedelta(seconds=seconds))
        ws.advance_clock(seconds)

    # Firebreak goes down: Slack's events reach nobody, and no sweep says it listens.
    listening = events.subscriptions
    events.subscriptions = frozenset()
    move(40)
    missed = ws.post_as_user(channel, BOB, "while firebreak was down")["ts"]
    ws.post_as_user(channel, CAROL, "a reply in the gap, password: s3cretpass", thread_ts=missed)
    move(40)
    events.subscriptions = listening
    ws.post_as_user(channel, ALICE, "after it came back")
    await settled(harness)

    document = await close(harness, channel)
    [crawl] = [c for c in ws.calls("conversations.history") if c.ok]
    assert float(crawl.args["oldest"]) < float(missed) < float(crawl.args["latest"])
    assert said(document) == [
        ("Alice Example", "before the outage", []),
        # Read back from Slack, and masked like what was recorded.
        ("Bob Example", "while firebreak was down", ["a reply in the gap, password: ***"]),
        ("Alice Example", "after it came back", []),
    ]
