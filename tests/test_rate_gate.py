"""After a 429, no other call that Slack's same limit covers goes out before Retry-After.

The real slack_sdk client through `handlers/slack_gateway.py`, against the emulator.
"""

from __future__ import annotations

import asyncio
import time

from emulator import SlackEmulator, Workspace
from handlers.slack_gateway import SlackGateway, make_client

TOKEN = "xoxb-test-token"


async def test_a_method_limited_by_slack_waits_for_retry_after() -> None:
    workspace = Workspace()
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        gateway = SlackGateway(make_client(TOKEN, emulator.api_url))
        emulator.inject_fault("conversations.create", status=429, retry_after=2, count=1)
        started = time.monotonic()
        first = asyncio.ensure_future(gateway.create_channel("incident-first"))
        while not any(c.method == "conversations.create" for c in workspace.call_log):
            # The 429 is not in the call log; wait until the client has met it.
            if first.done() or time.monotonic() - started > 0.5:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the first call is now waiting out its Retry-After
        second_sent = time.monotonic()
        await gateway.create_channel("incident-second")
        second_done = time.monotonic()
        await first
    assert second_done - started >= 2.0, "a call went out while Slack said to wait"
    assert second_done - second_sent >= 1.5
    names = sorted(c.name for c in workspace.channels.values() if c.name.startswith("incident-"))
    assert names == ["incident-first", "incident-second"]


async def test_a_channel_limit_holds_posts_to_that_channel_only() -> None:
    workspace = Workspace()
    busy = workspace.add_channel("busy", members=[workspace.bot_user_id])
    quiet = workspace.add_channel("quiet", members=[workspace.bot_user_id])
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        gateway = SlackGateway(make_client(TOKEN, emulator.api_url))
        emulator.inject_fault("chat.postMessage", status=429, retry_after=2, count=1)
        started = time.monotonic()
        first = asyncio.ensure_future(gateway.post(busy.id, "first"))
        await asyncio.sleep(0.3)
        await gateway.post(quiet.id, "elsewhere")
        elsewhere = time.monotonic() - started
        await gateway.post(busy.id, "second")
        second = time.monotonic() - started
        await first
    assert elsewhere < 1.0, "another channel's post waited for this channel's limit"
    assert second >= 2.0
    assert [m["text"] for m in workspace.messages(busy.id)] == ["first", "second"]


async def test_posts_to_one_channel_keep_their_order_under_its_limit() -> None:
    workspace = Workspace()
    channel = workspace.add_channel("incident-busy", members=[workspace.bot_user_id])
    async with SlackEmulator(bot_token=TOKEN, workspace=workspace) as emulator:
        emulator.set_channel_post_limit(1)
        gateway = SlackGateway(make_client(TOKEN, emulator.api_url))
        texts = [f"update {n}" for n in range(4)]
        await asyncio.gather(*(gateway.post(channel.id, text) for text in texts))
    assert [m["text"] for m in workspace.messages(channel.id)] == texts
