"""The emulator's Events API: the envelopes and event shapes Slack sends, signed as Slack
signs them, only what the app subscribed to in channels the bot is in, and retried with
X-Slack-Retry-Num when the app does not answer 2xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from emulator import SlackEmulator
from tests.harness import ALICE, BOB, manifest_events, seeded_workspace

SECRET = "events-secret"


class Receiver:
    """An app's request URL that checks Slack's signature and can refuse the first tries."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.refuse = 0
        self.verifier = SignatureVerifier(SECRET)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        assert self.verifier.is_valid(
            body, request.headers["X-Slack-Request-Timestamp"], request.headers["X-Slack-Signature"]
        )
        self.received.append((dict(request.headers), json.loads(body)))
        if self.refuse:
            self.refuse -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [b["event"] for _, b in self.received if b["event"]["type"] == kind]


@pytest.fixture
async def wired() -> AsyncIterator[tuple[SlackEmulator, Receiver, str]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/slack/events", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    workspace = seeded_workspace()
    channel = workspace.add_channel("incident-x", members=[ALICE, workspace.bot_user_id])
    async with SlackEmulator(workspace=workspace) as slack:
        slack.events.subscribe(manifest_events(), request_url=url, signing_secret=SECRET)
        slack.events.retry_delays = (0.0, 0.0, 0.0)
        yield slack, receiver, channel.id
    await runner.cleanup()


async def test_shapes_of_each_event(wired: tuple[SlackEmulator, Receiver, str]) -> None:
    slack, receiver, channel = wired
    ws = slack.workspace
    ws.join_as_user(channel, BOB)
    parent = ws.post_as_user(channel, ALICE, "first")["ts"]
    reply = ws.post_as_user(channel, BOB, "second", thread_ts=parent)["ts"]
    ws.edit_as_user(channel, parent, ALICE, "first, edited")
    ws.add_reaction(channel, reply, "pushpin", ALICE)
    ws.pin_as_user(channel, reply, ALICE)
    ws.delete_as_user(channel, reply, BOB)
    await slack.events.settled()

    bodies = [b for _, b in receiver.received]
    assert all(b["type"] == "event_callback" and b["event_id"].startswith("Ev") for b in bodies)
    assert len({b["event_id"] for b in bodies}) == len(bodies)
    assert {b["api_app_id"] for b in bodies} == {ws.app_id}
    [joined] = receiver.events("member_joined_channel")
    assert joined == {**joined, "user": BOB, "channel": channel, "channel_type": "C"}
    messages = receiver.events("message")
    said = [m for m in messages if "subtype" not in m]
    assert [(m["user"], m["text"], m.get("thread_ts")) for m in said] == [
        (ALICE, "first", None),
        (BOB, "second", parent),
    ]
    [changed] = [m for m in messages if m.get("subtype") == "message_changed"]
    assert changed["message"]["text"] == "first, edited" and changed["message"]["edited"]
    assert changed["previous_message"]["text"] == "first"
    [deleted] = [m for m in messages if m.get("subtype") == "message_deleted"]
    assert deleted["deleted_ts"] == reply and deleted["previous_message"]["text"] == "second"
    [reaction] = receiver.events("reaction_added")
    assert reaction["item"] == {"type": "message", "channel": channel, "ts": reply}
    assert reaction["reaction"] == "pushpin" and reaction["item_user"] == BOB
    [pin] = receiver.events("pin_added")
    assert pin["channel_id"] == channel and pin["item"]["message"]["ts"] == reply
    assert pin["user"] == ALICE


async def test_only_subscribed_events_in_the_bots_channels(
    wired: tuple[SlackEmulator, Receiver, str],
) -> None:
    slack, receiver, channel = wired
    ws = slack.workspace
    elsewhere = ws.add_channel("random", members=[ALICE, BOB])  # the bot is not in it
    ws.post_as_user(elsewhere.id, ALICE, "not for the bot")
    slack.events.subscribe(
        ["reaction_added"], request_url=slack.events.request_url, signing_secret=SECRET
    )
    ts = ws.post_as_user(channel, ALICE, "not subscribed")["ts"]
    ws.add_reaction(channel, ts, "eyes", BOB)
    await slack.events.settled()
    assert [b["event"]["type"] for _, b in receiver.received] == ["reaction_added"]


async def test_an_app_that_fails_gets_numbered_retries(
    wired: tuple[SlackEmulator, Receiver, str],
) -> None:
    slack, receiver, channel = wired
    receiver.refuse = 2
    slack.workspace.post_as_user(channel, ALICE, "retried")
    await slack.events.settled()
    assert [h.get("X-Slack-Retry-Num") for h, _ in receiver.received] == [None, "1", "2"]
    assert [h.get("X-Slack-Retry-Reason") for h, _ in receiver.received] == [
        None,
        "http_error",
        "http_error",
    ]
    assert len({b["event_id"] for _, b in receiver.received}) == 1  # the same event
    assert slack.events.deliveries[-1].attempts == ["http_error", "http_error", "ok"]
