"""Reading a large channel back: pagination, threads and rate limits against the fake Slack.

No database here: the gateway talks to the emulator over loopback HTTP and
the compiler gets a transient incident, so 11,000 messages stay quick.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.postmortem.compiler import compile_document
from bot.postmortem.history import PAGE_SIZE, ts_of
from emulator import SlackEmulator, Workspace
from emulator.models import Channel
from handlers.slack_gateway import SlackGateway, make_client
from storage.models import Incident

TOKEN = "xoxb-history"
PEOPLE = ("U0ALICE", "U0BOB", "U0CAROL")
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class BigChannel:
    emulator: SlackEmulator
    workspace: Workspace
    channel: Channel
    top_level: list[str]  # ts of every top-level message, oldest first
    threads: dict[str, list[str]]  # parent ts → reply ts, oldest first


def seed(
    workspace: Workspace, channel: Channel, messages: int
) -> tuple[list[str], dict[str, list[str]]]:
    """`messages` top-level messages; every 50th has 5 replies, one has 450."""
    top_level: list[str] = []
    threads: dict[str, list[str]] = {}
    people = itertools.cycle(PEOPLE)
    for n in range(messages):
        ts = workspace.post_as_user(channel.id, next(people), f"message {n}")["ts"]
        top_level.append(ts)
        if n % 50 == 0:
            count = 450 if n == 500 else 5
            threads[ts] = [
                workspace.post_as_user(channel.id, next(people), f"reply {n}.{r}", ts)["ts"]
                for r in range(count)
            ]
    return top_level, threads


@pytest.fixture
async def big() -> AsyncIterator[BigChannel]:
    seconds = itertools.count()
    workspace = Workspace(clock=lambda: START.timestamp() + next(seconds))
    for user in PEOPLE:
        workspace.add_user(user, user[2:].lower(), real_name=user[2:].title())
    channel = workspace.add_channel("incident-big", members=[*PEOPLE, workspace.bot_user_id])
    top_level, threads = seed(workspace, channel, 10_000)
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        yield BigChannel(emulator, workspace, channel, top_level, threads)


def incident_for(channel: Channel) -> Incident:
    return Incident(
        id=7,
        title="big",
        description="",
        severity="P2",
        status="resolved",
        declared_by="U0ALICE",
        declared_at=START,
        channel_id=channel.id,
        channel_name=channel.name,
    )


async def test_ten_thousand_messages_with_threads_compile_in_order(big: BigChannel) -> None:
    gateway = SlackGateway(make_client(TOKEN, big.emulator.api_url))
    document = await compile_document(gateway, incident_for(big.channel), [], generated_at=START)

    timeline = document["timeline"]
    assert [line["ts"] for line in timeline] == big.top_level
    for line in timeline:
        replies = [reply["ts"] for reply in line.get("replies", [])]
        assert replies == big.threads.get(line["ts"], [])
    assert sum(len(line.get("replies", [])) for line in timeline) == 49 * 5 + 450 + 5 * 150
    assert timeline[0]["text"] == "message 0" and timeline[-1]["text"] == "message 9999"
    assert {line["who"] for line in timeline} == {"Alice", "Bob", "Carol"}
    assert document["stats"] == {"messages": 10_000 + 1_445, "threads": 200}

    history = big.workspace.calls("conversations.history")
    assert len(history) == 50 and {c.args["limit"] for c in history} == {str(PAGE_SIZE)}
    replies = big.workspace.calls("conversations.replies")
    assert len(replies) == 200 + 2  # one call a thread, three pages for the 450-reply one
    assert big.workspace.count("users.info") == len(PEOPLE)  # names are cached


async def test_history_stops_at_the_close(big: BigChannel) -> None:
    gateway = SlackGateway(make_client(TOKEN, big.emulator.api_url))
    cut = big.top_level[999]
    pages = [page async for page in gateway.history(big.channel.id, latest=cut)]
    assert [len(page) for page in pages] == [200] * 5
    assert pages[0][0].ts == cut and pages[-1][-1].ts == big.top_level[0]
    assert ts_of(datetime.fromtimestamp(float(cut), UTC)) == cut


async def test_rate_limits_are_waited_out_as_retry_after_says(big: BigChannel) -> None:
    # A client without slack_sdk's own retries, so the gateway's waiting is what is tested.
    gateway = SlackGateway(AsyncWebClient(token=TOKEN, base_url=big.emulator.api_url))
    big.emulator.inject_fault("conversations.history", 429, retry_after=1, count=2)
    started = time.monotonic()
    pages = [page async for page in gateway.history(big.channel.id)]
    assert time.monotonic() - started >= 2  # waited 1 s, twice
    assert sum(len(page) for page in pages) == 10_000
    errors = [c.error for c in big.workspace.calls("conversations.history")]
    assert errors[:2] == ["ratelimited", "ratelimited"] and set(errors[2:]) == {None}


async def test_broadcast_replies_once_and_deleted_parents_keep_their_thread() -> None:
    workspace = Workspace()
    for user in PEOPLE:
        workspace.add_user(user, user[2:].lower(), real_name=user[2:].title())
    channel = workspace.add_channel("incident-small", members=[*PEOPLE, workspace.bot_user_id])
    parent = workspace.post_as_user(channel.id, "U0ALICE", "Deploying the fix")["ts"]
    reply = workspace.post_as_user(channel.id, "U0BOB", "Also sent to the channel", parent)["ts"]
    channel.messages[reply]["subtype"] = "thread_broadcast"
    doomed = workspace.call("chat.postMessage", {"channel": channel.id, "text": "a bot message"})
    workspace.post_as_user(channel.id, "U0CAROL", "reply to a deleted message", doomed["ts"])
    workspace.call("chat.delete", {"channel": channel.id, "ts": doomed["ts"]})
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        gateway = SlackGateway(make_client(TOKEN, emulator.api_url))
        document = await compile_document(gateway, incident_for(channel), [], generated_at=START)

    first, deleted = document["timeline"]
    assert (first["text"], [r["text"] for r in first["replies"]]) == (
        "Deploying the fix",
        ["Also sent to the channel"],
    )
    assert (deleted["who"], deleted["text"]) == ("(deleted)", "(message deleted)")
    assert [r["who"] for r in deleted["replies"]] == ["Carol"]
    assert document["stats"] == {"messages": 3, "threads": 2}
