"""The Slack emulator, exercised through the real slack_sdk client and a real Bolt app."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

import emulator.driver
from emulator import SlackDriver, SlackEmulator, Workspace

TOKEN = "xoxb-test"
SECRET = "signing-secret"


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    ws = Workspace(team_id="T0001", bot_user_id="UBOT")
    ws.add_user("U1", "alice", real_name="Alice A")
    ws.add_user("U2", "bob")
    server = SlackEmulator(bot_token=TOKEN, workspace=ws)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def ws(emu: SlackEmulator) -> Workspace:
    return emu.workspace


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=emu.api_url)


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response["error"]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def options(n: int) -> list[dict[str, Any]]:
    return [{"text": {"type": "plain_text", "text": f"o{i}"}, "value": f"v{i}"} for i in range(n)]


# ------------------------------------------------------------------- channels


@pytest.mark.asyncio
async def test_auth_test_describes_the_bot_user(client: AsyncWebClient) -> None:
    auth = await client.auth_test()
    assert (auth["user_id"], auth["team_id"], auth["bot_id"]) == ("UBOT", "T0001", "B0001")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Incident-1", "invalid_name_specials"),
        ("inc 1", "invalid_name_specials"),
        ("inc.1", "invalid_name_specials"),
        ("a" * 81, "invalid_name_maxlength"),
        ("---", "invalid_name_punctuation"),
        ("", "invalid_name_required"),
    ],
)
async def test_channel_name_rules(
    client: AsyncWebClient, ws: Workspace, name: str, error: str
) -> None:
    assert await error_of(client.conversations_create(name=name)) == error
    assert ws.count("conversations.create") == 0
    assert ws.count("conversations.create", ok=False) == 1


@pytest.mark.asyncio
async def test_name_taken_includes_archived_channels(client: AsyncWebClient, ws: Workspace) -> None:
    created = await client.conversations_create(name="a" * 80)
    channel = created["channel"]
    assert channel["is_member"] and channel["creator"] == "UBOT"
    await client.conversations_archive(channel=channel["id"])
    assert await error_of(client.conversations_create(name="a" * 80)) == "name_taken"
    assert await error_of(client.conversations_archive(channel=channel["id"])) == "already_archived"
    assert await error_of(client.chat_postMessage(channel=channel["id"], text="x")) == "is_archived"
    assert ws.count("conversations.create") == 1


@pytest.mark.asyncio
async def test_bot_must_be_member_to_write(client: AsyncWebClient, ws: Workspace) -> None:
    channel = ws.add_channel("general", members=["U1"])
    human = ws.post_as_user(channel.id, "U1", "hello")
    assert await error_of(client.chat_postMessage(channel=channel.id, text="x")) == "not_in_channel"
    assert (
        await error_of(client.pins_add(channel=channel.id, timestamp=human["ts"]))
        == "not_in_channel"
    )
    assert (
        await error_of(client.conversations_setTopic(channel=channel.id, topic="t"))
        == "not_in_channel"
    )
    assert await error_of(client.conversations_history(channel=channel.id)) == "not_in_channel"
    await client.conversations_join(channel=channel.id)
    posted = await client.chat_postMessage(channel="#general", text="by name")
    assert posted["channel"] == channel.id
    assert [m["text"] for m in ws.messages(channel.id)] == ["hello", "by name"]


@pytest.mark.asyncio
async def test_unknown_and_private_channels_are_not_found(
    client: AsyncWebClient, ws: Workspace
) -> None:
    secret = ws.add_channel("secret", members=["U1"], is_private=True)
    assert await error_of(client.conversations_info(channel="C404")) == "channel_not_found"
    assert await error_of(client.conversations_info(channel=secret.id)) == "channel_not_found"
    assert (
        await error_of(client.chat_postMessage(channel="#secret", text="x")) == "channel_not_found"
    )


@pytest.mark.asyncio
async def test_invite_rules_are_all_or_nothing(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-2"))["channel"]["id"]
    assert (
        await error_of(client.conversations_invite(channel=channel, users="UBOT"))
        == "cant_invite_self"
    )
    assert (
        await error_of(client.conversations_invite(channel=channel, users="U1,UNOPE"))
        == "user_not_found"
    )
    assert "U1" not in ws.channels[channel].members
    await client.conversations_invite(channel=channel, users=["U1", "U2"])
    assert (
        await error_of(client.conversations_invite(channel=channel, users="U1"))
        == "already_in_channel"
    )
    members = await client.conversations_members(channel=channel)
    assert members["members"] == ["UBOT", "U1", "U2"]
    assert (
        await error_of(client.conversations_kick(channel=channel, user="UBOT")) == "cant_kick_self"
    )
    await client.conversations_kick(channel=channel, user="U2")
    assert await error_of(client.conversations_kick(channel=channel, user="U2")) == "not_in_channel"
    joins = [m for m in ws.messages(channel, system=True) if m.get("subtype") == "channel_join"]
    assert [m["user"] for m in joins] == ["UBOT", "U1", "U2"]


@pytest.mark.asyncio
async def test_topic_and_purpose_limits(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-3"))["channel"]["id"]
    assert (
        await error_of(client.conversations_setTopic(channel=channel, topic="t" * 251))
        == "too_long"
    )
    await client.conversations_setTopic(channel=channel, topic="t" * 250)
    await client.conversations_setPurpose(channel=channel, purpose="Sev1: db down")
    info = await client.conversations_info(channel=channel, include_num_members=True)
    assert info["channel"]["topic"]["value"] == "t" * 250
    assert info["channel"]["purpose"]["value"] == "Sev1: db down"
    assert info["channel"]["num_members"] == 1


@pytest.mark.asyncio
async def test_conversations_list_pagination_and_visibility(
    client: AsyncWebClient, ws: Workspace
) -> None:
    for i in range(5):
        await client.conversations_create(name=f"inc-{i}")
    ws.add_channel("hidden", members=["U1"], is_private=True)
    oldest = ws.channel_by_name("inc-0")
    assert oldest is not None
    await client.conversations_archive(channel=oldest.id)
    first = await client.conversations_list(limit=2, exclude_archived=True)
    assert [c["name"] for c in first["channels"]] == ["inc-1", "inc-2"]
    names = []
    async for page in await client.conversations_list(
        limit=2, types="public_channel,private_channel"
    ):
        names += [c["name"] for c in page["channels"]]
    assert names == [f"inc-{i}" for i in range(5)]
    assert await error_of(client.conversations_list(cursor="bogus")) == "invalid_cursor"


# ------------------------------------------------------------------- messages


@pytest.mark.asyncio
async def test_history_is_newest_first_and_paginated(client: AsyncWebClient, ws: Workspace) -> None:
    channel = ws.add_channel("timeline", members=["UBOT", "U1"])
    posted = [ws.post_as_user(channel.id, "U1", f"m{i}")["ts"] for i in range(7)]
    page = await client.conversations_history(channel=channel.id, limit=3)
    assert [m["text"] for m in page["messages"]] == ["m6", "m5", "m4"]
    assert page["has_more"] and page["response_metadata"]["next_cursor"]
    texts = []
    async for chunk in await client.conversations_history(channel=channel.id, limit=3):
        texts += [m["text"] for m in chunk["messages"]]
    assert texts == [f"m{i}" for i in reversed(range(7))]
    window = await client.conversations_history(
        channel=channel.id, oldest=posted[1], latest=posted[4]
    )
    assert [m["text"] for m in window["messages"]] == ["m3", "m2"]
    inclusive = await client.conversations_history(
        channel=channel.id, oldest=posted[1], latest=posted[4], inclusive=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["m4", "m3", "m2", "m1"]
    last = await client.conversations_history(channel=channel.id, limit=10)
    assert not last["has_more"] and last["response_metadata"]["next_cursor"] == ""


@pytest.mark.asyncio
async def test_history_limit_defaults_to_100_and_caps_at_999(
    client: AsyncWebClient, ws: Workspace
) -> None:
    channel = ws.add_channel("busy", members=["UBOT", "U1"])
    for i in range(1000):
        ws.post_as_user(channel.id, "U1", str(i))
    assert len((await client.conversations_history(channel=channel.id))["messages"]) == 100
    capped = await client.conversations_history(channel=channel.id, limit=5000)
    assert len(capped["messages"]) == 999 and capped["has_more"]


@pytest.mark.asyncio
async def test_threads_replies_and_broadcasts(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-4"))["channel"]["id"]
    parent = (await client.chat_postMessage(channel=channel, text="status"))["ts"]
    replies = [
        (await client.chat_postMessage(channel=channel, text=f"r{i}", thread_ts=parent))["ts"]
        for i in range(4)
    ]
    await client.chat_postMessage(
        channel=channel, text="loud", thread_ts=parent, reply_broadcast=True
    )
    await client.chat_postMessage(channel=channel, text="lost", thread_ts="1.000001")
    history = [
        m
        for m in (await client.conversations_history(channel=channel))["messages"]
        if not m.get("subtype", "").startswith("channel_")
    ]
    assert [m["text"] for m in history] == ["loud", "status"]
    assert history[1]["reply_count"] == 5 and history[1]["latest_reply"] == history[0]["ts"]
    page = await client.conversations_replies(channel=channel, ts=replies[2], limit=2)
    assert [m["text"] for m in page["messages"]] == ["status", "r0"] and page["has_more"]
    rest = await client.conversations_replies(
        channel=channel, ts=parent, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["r1", "r2", "r3", "loud"]
    assert (
        await error_of(client.conversations_replies(channel=channel, ts="1.000001"))
        == "thread_not_found"
    )


@pytest.mark.asyncio
async def test_pins_and_reactions(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-5"))["channel"]["id"]
    ts = (await client.chat_postMessage(channel=channel, text="pin me"))["ts"]
    await client.pins_add(channel=channel, timestamp=ts)
    assert await error_of(client.pins_add(channel=channel, timestamp=ts)) == "already_pinned"
    assert (
        await error_of(client.pins_add(channel=channel, timestamp="1.000002"))
        == "message_not_found"
    )
    assert [i["message"]["text"] for i in (await client.pins_list(channel=channel))["items"]] == [
        "pin me"
    ]
    await client.pins_remove(channel=channel, timestamp=ts)
    assert await error_of(client.pins_remove(channel=channel, timestamp=ts)) == "no_pin"
    await client.reactions_add(channel=channel, timestamp=ts, name="pushpin")
    ws.add_reaction(channel, ts, "pushpin", "U1")
    assert (
        await error_of(client.reactions_add(channel=channel, timestamp=ts, name="pushpin"))
        == "already_reacted"
    )
    assert ws.messages(channel)[0]["reactions"] == [
        {"name": "pushpin", "users": ["UBOT", "U1"], "count": 2}
    ]


@pytest.mark.asyncio
async def test_update_ephemeral_and_permalink_rules(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-6"))["channel"]["id"]
    ts = (await client.chat_postMessage(channel=channel, text="v1", blocks=[section("v1")]))["ts"]
    human = ws.post_as_user(channel, "U1", "mine")
    assert (
        await error_of(client.chat_update(channel=channel, ts=human["ts"], text="x"))
        == "cant_update_message"
    )
    assert (
        await error_of(client.chat_update(channel=channel, ts="1.000003", text="x"))
        == "message_not_found"
    )
    updated = await client.chat_update(channel=channel, ts=ts, text="v2")
    assert "blocks" not in updated["message"] and updated["message"]["edited"]["user"] == "UBOT"
    assert (
        await error_of(client.chat_postEphemeral(channel=channel, user="U1", text="psst"))
        == "user_not_in_channel"
    )
    await client.conversations_invite(channel=channel, users="U1")
    await client.chat_postEphemeral(channel=channel, user="U1", text="psst")
    assert [e["text"] for e in ws.ephemerals("U1")] == ["psst"]
    link = await client.chat_getPermalink(channel=channel, message_ts=ts)
    assert link["permalink"].endswith(f"/archives/{channel}/p{ts.replace('.', '')}")


@pytest.mark.asyncio
async def test_form_encoded_blocks_are_decoded(client: AsyncWebClient, ws: Workspace) -> None:
    channel = (await client.conversations_create(name="inc-7"))["channel"]["id"]
    blocks = [{**section("form"), "block_id": "b1"}]
    await client.api_call(
        "chat.postMessage", data={"channel": channel, "blocks": json.dumps(blocks)}
    )
    assert ws.messages(channel)[0]["blocks"] == blocks
    assert ws.calls("chat.postMessage")[0].args["blocks"] == blocks


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param([section("x")] * 51, id="51-blocks"),
        pytest.param([section("x" * 3001)], id="section-3001"),
        pytest.param(
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], id="header-151"
        ),
        pytest.param(
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], id="header-mrkdwn"
        ),
        pytest.param(
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], id="fields-11"
        ),
        pytest.param(
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            id="field-2001",
        ),
        pytest.param([{"type": "section"}], id="section-empty"),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [{"type": "checkboxes", "action_id": "c", "options": options(11)}],
                }
            ],
            id="checkboxes-11",
        ),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [
                        {"type": "radio_buttons", "action_id": "r", "options": options(11)}
                    ],
                }
            ],
            id="radio-11",
        ),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": f"b{i}",
                            "text": {"type": "plain_text", "text": "b"},
                        }
                        for i in range(26)
                    ],
                }
            ],
            id="actions-26",
        ),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "b",
                            "text": {"type": "plain_text", "text": "b" * 76},
                        }
                    ],
                }
            ],
            id="button-76",
        ),
        pytest.param([{**section("x"), "block_id": "b" * 256}], id="block-id-256"),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "a" * 256,
                            "text": {"type": "plain_text", "text": "b"},
                        }
                    ],
                }
            ],
            id="action-id-256",
        ),
        pytest.param(
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            id="context-11",
        ),
        pytest.param(
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "checkboxes",
                            "action_id": "c",
                            "options": [{"text": {"type": "plain_text", "text": "o"}}],
                        }
                    ],
                }
            ],
            id="option-no-value",
        ),
        pytest.param(
            [{**section("a"), "block_id": "dup"}, {**section("b"), "block_id": "dup"}],
            id="duplicate-block-id",
        ),
        pytest.param([{"type": "carousel"}], id="unknown-type"),
    ],
)
async def test_invalid_blocks_are_rejected(
    client: AsyncWebClient, ws: Workspace, blocks: list[dict[str, Any]]
) -> None:
    channel = (await client.conversations_create(name="inc-8"))["channel"]["id"]
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel=channel, text="fallback", blocks=blocks)
    assert info.value.response["error"] == "invalid_blocks"
    assert "json-pointer:/blocks" in info.value.response["errors"][0]
    assert ws.messages(channel) == []


@pytest.mark.asyncio
async def test_block_limits_are_inclusive_and_text_rules(
    client: AsyncWebClient, ws: Workspace
) -> None:
    channel = (await client.conversations_create(name="inc-9"))["channel"]["id"]
    await client.chat_postMessage(
        channel=channel, text="ok", blocks=[section("x" * 3000)] + [{"type": "divider"}] * 49
    )
    assert (
        await error_of(client.chat_postMessage(channel=channel, text="x" * 40001)) == "msg_too_long"
    )
    no_text = client.api_call("chat.postMessage", json={"channel": channel})
    assert await error_of(no_text) == "no_text"
    assert len(ws.messages(channel)[0]["blocks"]) == 50


@pytest.mark.asyncio
async def test_directory_and_bookmarks(client: AsyncWebClient, ws: Workspace) -> None:
    assert (await client.users_info(user="U1"))["user"]["real_name"] == "Alice A"
    assert await error_of(client.users_info(user="U404")) == "user_not_found"
    first = await client.users_list(limit=2)
    assert [u["id"] for u in first["members"]] == ["UBOT", "U1"]
    assert first["response_metadata"]["next_cursor"]
    ws.add_usergroup("S1", "oncall", ["U1", "U2"])
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    assert await error_of(client.usergroups_users_list(usergroup="S404")) == "no_such_subteam"
    assert (await client.team_info())["team"]["id"] == "T0001"
    channel = (await client.conversations_create(name="inc-17"))["channel"]["id"]
    bad = client.bookmarks_add(channel_id=channel, title="Doc", type="link", link="doc")
    assert await error_of(bad) == "invalid_link"
    await client.bookmarks_add(channel_id=channel, title="Doc", type="link", link="https://d")
    assert [b["title"] for b in ws.channels[channel].bookmarks] == ["Doc"]


# ----------------------------------------------------------- faults and limits


@pytest.mark.asyncio
async def test_429_carries_retry_after_and_retry_handler_recovers(
    emu: SlackEmulator, client: AsyncWebClient, ws: Workspace
) -> None:
    emu.inject_fault("conversations.create", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as info:
        await client.conversations_create(name="inc-10")
    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "1"
    assert info.value.response["error"] == "ratelimited"
    emu.inject_fault("conversations.create", status=429, retry_after=1)
    patient = AsyncWebClient(
        token=TOKEN,
        base_url=emu.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    created = await patient.conversations_create(name="inc-10")
    assert created["channel"]["name"] == "inc-10"
    assert [c.error for c in ws.calls("conversations.create")] == [
        "ratelimited",
        "ratelimited",
        None,
    ]


@pytest.mark.asyncio
async def test_server_errors_delays_and_injected_slack_errors(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.inject_fault("auth.test", status=500)
    with pytest.raises(SlackApiError) as info:
        await client.auth_test()
    assert info.value.response.status_code == 500
    emu.inject_fault("auth.test", error="team_access_not_granted")
    assert await error_of(client.auth_test()) == "team_access_not_granted"
    emu.inject_fault("*", delay=0.3)
    started = time.monotonic()
    assert (await client.auth_test())["ok"]
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_a_held_call_waits_in_flight_until_released(
    emu: SlackEmulator, client: AsyncWebClient, ws: Workspace
) -> None:
    general = ws.add_channel("general", members=["UBOT"])
    held = emu.hold("chat.postMessage", text="reminder")
    await client.chat_postMessage(channel=general.id, text="an update")  # not matched
    pending = asyncio.ensure_future(client.chat_postMessage(channel=general.id, text="a reminder"))
    await asyncio.wait_for(held.arrived.wait(), 5)
    assert not pending.done() and [m["text"] for m in ws.messages(general.id)] == ["an update"]
    held.release()
    assert (await pending)["ok"]
    assert [m["text"] for m in ws.messages(general.id)] == ["an update", "a reminder"]


@pytest.mark.asyncio
async def test_per_method_and_per_channel_rate_limits(
    emu: SlackEmulator, client: AsyncWebClient, ws: Workspace
) -> None:
    emu.set_rate_limit("conversations.create", per_minute=2)
    await client.conversations_create(name="inc-11")
    await client.conversations_create(name="inc-12")
    with pytest.raises(SlackApiError) as info:
        await client.conversations_create(name="inc-13")
    assert (
        info.value.response.status_code == 429
        and int(info.value.response.headers["Retry-After"]) >= 1
    )
    ws.advance_clock(61)
    await client.conversations_create(name="inc-13")
    emu.set_channel_post_limit(1)
    inc_11 = ws.channel_by_name("inc-11")
    assert inc_11 is not None
    await client.chat_postMessage(channel="#inc-11", text="one")
    await client.chat_postMessage(channel="#inc-12", text="other channel")
    assert await error_of(client.chat_postMessage(channel=inc_11.id, text="two")) == "ratelimited"
    ws.advance_clock(1.1)
    await client.chat_postMessage(channel=inc_11.id, text="two")
    assert [m["text"] for m in ws.messages(inc_11.id)] == ["one", "two"]


@pytest.mark.asyncio
async def test_authentication_is_required(emu: SlackEmulator) -> None:
    assert (
        await error_of(AsyncWebClient(token="xoxb-wrong", base_url=emu.api_url).auth_test())
        == "invalid_auth"
    )
    assert await error_of(AsyncWebClient(base_url=emu.api_url).auth_test()) == "not_authed"
    with pytest.raises(SlackApiError) as info:
        await AsyncWebClient(token=TOKEN, base_url=emu.api_url).api_call("nope.nothing")
    assert (
        info.value.response.status_code == 404 and info.value.response["error"] == "unknown_method"
    )


# ------------------------------------------------------------------- files


@pytest.mark.asyncio
async def test_files_upload_v2_round_trip(
    emu: SlackEmulator, client: AsyncWebClient, ws: Workspace
) -> None:
    channel = (await client.conversations_create(name="inc-14"))["channel"]["id"]
    uploaded = await client.files_upload_v2(
        channel=channel,
        content="# Post-mortem\n",
        filename="postmortem.md",
        title="Post-mortem",
        initial_comment="Draft attached",
    )
    file_id = uploaded["file"]["id"]
    assert ws.file_bytes(file_id) == b"# Post-mortem\n"
    message = ws.messages(channel)[-1]
    assert message["text"] == "Draft attached" and message["files"][0]["id"] == file_id
    assert (await client.files_info(file=file_id))["file"]["title"] == "Post-mortem"
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            uploaded["file"]["url_private"], headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp,
    ):
        assert await resp.read() == b"# Post-mortem\n"


@pytest.mark.asyncio
async def test_completing_an_upload_needs_the_bytes(
    emu: SlackEmulator, client: AsyncWebClient, ws: Workspace
) -> None:
    channel = (await client.conversations_create(name="inc-15"))["channel"]["id"]
    ticket = await client.files_getUploadURLExternal(filename="a.txt", length=3)
    files = [{"id": ticket["file_id"], "title": "A"}]
    assert (
        await error_of(client.files_completeUploadExternal(files=files, channel_id=channel))
        == "file_not_found"
    )
    form = aiohttp.FormData()
    form.add_field("file", b"abc", filename="a.txt")
    async with (
        aiohttp.ClientSession() as session,
        session.post(ticket["upload_url"], data=form) as resp,
    ):
        assert resp.status == 200
    await client.files_completeUploadExternal(files=files, channel_id=channel)
    assert ws.file_bytes(ticket["file_id"]) == b"abc"


# ------------------------------------------------------- interactivity rules


MODAL = {
    "type": "modal",
    "callback_id": "declare",
    "title": {"type": "plain_text", "text": "Declare incident"},
    "submit": {"type": "plain_text", "text": "Declare"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "title"},
        },
        {
            "type": "input",
            "block_id": "severity",
            "label": {"type": "plain_text", "text": "Severity"},
            "element": {"type": "static_select", "action_id": "severity", "options": options(3)},
        },
        {
            "type": "input",
            "block_id": "lead",
            "optional": True,
            "label": {"type": "plain_text", "text": "Lead"},
            "element": {"type": "users_select", "action_id": "lead"},
        },
    ],
}


@pytest.mark.asyncio
async def test_trigger_ids_expire_and_are_single_use(client: AsyncWebClient, ws: Workspace) -> None:
    trigger = ws.mint_trigger("U1")
    opened = await client.views_open(trigger_id=trigger, view=MODAL)
    assert ws.open_views("U1")[0]["id"] == opened["view"]["id"]
    assert (
        await error_of(client.views_open(trigger_id=trigger, view=MODAL)) == "exchanged_trigger_id"
    )
    assert (
        await error_of(client.views_open(trigger_id="1.2.nope", view=MODAL)) == "invalid_trigger_id"
    )
    late = ws.mint_trigger("U1")
    ws.advance_clock(3.5)
    assert await error_of(client.views_open(trigger_id=late, view=MODAL)) == "expired_trigger_id"


@pytest.mark.asyncio
async def test_view_validation_and_update_rules(client: AsyncWebClient, ws: Workspace) -> None:
    too_long_title = {**MODAL, "title": {"type": "plain_text", "text": "t" * 25}}
    with pytest.raises(SlackApiError) as info:
        await client.views_open(trigger_id=ws.mint_trigger("U1"), view=too_long_title)
    assert info.value.response["error"] == "invalid_arguments"
    assert "/view/title/text" in info.value.response["response_metadata"]["messages"][0]
    no_submit = {k: v for k, v in MODAL.items() if k != "submit"}
    assert (
        await error_of(client.views_open(trigger_id=ws.mint_trigger("U1"), view=no_submit))
        == "invalid_arguments"
    )
    too_many = {**MODAL, "blocks": [section("x")] * 101}
    assert (
        await error_of(client.views_open(trigger_id=ws.mint_trigger("U1"), view=too_many))
        == "invalid_arguments"
    )
    view = (await client.views_open(trigger_id=ws.mint_trigger("U1"), view=MODAL))["view"]
    assert (
        await error_of(client.views_update(view_id=view["id"], hash="stale", view=MODAL))
        == "hash_conflict"
    )
    assert await error_of(client.views_update(view_id="V404", view=MODAL)) == "not_found"
    updated = await client.views_update(
        view_id=view["id"],
        hash=view["hash"],
        view={**MODAL, "title": {"type": "plain_text", "text": "Updated"}},
    )
    assert updated["view"]["title"]["text"] == "Updated"


@pytest.mark.asyncio
async def test_views_push_needs_a_modal_and_stops_at_three(
    client: AsyncWebClient, ws: Workspace
) -> None:
    assert await error_of(client.views_push(trigger_id=ws.mint_trigger("U1"), view=MODAL)) == (
        "not_found"
    )
    root = (await client.views_open(trigger_id=ws.mint_trigger("U1"), view=MODAL))["view"]
    for _ in range(2):
        await client.views_push(trigger_id=ws.mint_trigger("U1", root["id"]), view=MODAL)
    fourth = client.views_push(trigger_id=ws.mint_trigger("U1", root["id"]), view=MODAL)
    assert await error_of(fourth) == "push_limit_reached"
    stack = ws.open_views("U1")
    assert [v["root_view_id"] for v in stack] == [root["id"]] * 3
    assert stack[2]["previous_view_id"] == stack[1]["id"]


@pytest.mark.asyncio
async def test_response_url_posts_and_use_limit(client: AsyncWebClient, ws: Workspace) -> None:
    channel = ws.add_channel("ops", members=["U1"])
    url = ws.mint_response_url(channel.id, "U1")
    webhook = AsyncWebhookClient(url)
    assert (await webhook.send(text="only you")).status_code == 200
    assert (await webhook.send(text="everyone", response_type="in_channel")).status_code == 200
    assert [e["text"] for e in ws.ephemerals("U1")] == ["only you"]
    assert (
        ws.messages(channel.id)[-1]["text"] == "everyone"
        and ws.messages(channel.id)[-1]["user"] == "UBOT"
    )
    for _ in range(3):
        await webhook.send(text="again")
    refused = await webhook.send(text="sixth")
    assert refused.status_code == 404 and json.loads(refused.body)["error"] == "used_url"
    ts = ws.messages(channel.id)[-1]["ts"]
    on_message = AsyncWebhookClient(ws.mint_response_url(channel.id, "U1", message_ts=ts))
    assert (await on_message.send_dict({"delete_original": True})).status_code == 200
    assert [m["text"] for m in ws.messages(channel.id)] == []


@pytest.mark.asyncio
async def test_state_endpoint_dumps_the_workspace(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    await client.conversations_create(name="inc-16")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emu.base_url}/_emulator/state") as resp,
    ):
        state = await resp.json()
    assert [c["name"] for c in state["channels"]] == ["inc-16"]
    assert state["calls"][0]["method"] == "conversations.create"


# ------------------------------------------------------------- the driver


def test_driver_signature_verifies_with_slack_sdk(ws: Workspace) -> None:
    driver = SlackDriver("http://127.0.0.1:9/slack/events", SECRET, ws)
    body = "token=x&command=%2Fincident"
    headers = driver.sign(body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    forged = driver.sign(body, secret="wrong")
    assert not verifier.is_valid(
        body, forged["X-Slack-Request-Timestamp"], forged["X-Slack-Signature"]
    )


def build_bolt_app(emu: SlackEmulator, seen: list[Any]) -> AsyncApp:
    app = AsyncApp(
        token=TOKEN,
        signing_secret=SECRET,
        client=AsyncWebClient(token=TOKEN, base_url=emu.api_url),
        process_before_response=True,
    )

    @app.command("/incident")
    async def declare(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=MODAL)

    @app.view("declare")
    async def submitted(ack: Any, view: dict[str, Any], client: AsyncWebClient) -> None:
        values = view["state"]["values"]
        title = values["title"]["title"]["value"]
        if title == "bad":
            await ack(response_action="errors", errors={"title": "Be specific"})
            return
        await ack()
        seen.append(
            (
                title,
                values["severity"]["severity"]["selected_option"]["value"],
                values["lead"]["lead"]["selected_user"],
            )
        )
        channel = (await client.conversations_create(name="inc-bolt"))["channel"]["id"]
        tasks = {
            "type": "actions",
            "block_id": "tasks",
            "elements": [{"type": "checkboxes", "action_id": "tasks", "options": options(3)}],
        }
        button = {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "resolve",
                    "value": "inc-bolt",
                    "text": {"type": "plain_text", "text": "Resolve"},
                }
            ],
        }
        await client.chat_postMessage(
            channel=channel, text=title, blocks=[section(title), tasks, button]
        )

    @app.action("resolve")
    async def resolve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        seen.append(body["actions"][0]["value"])
        await respond(text="Resolved", replace_original=True)

    @app.action("tasks")
    async def tasks(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        seen.append([o["value"] for o in body["actions"][0]["selected_options"]])

    return app


@pytest_asyncio.fixture
async def bolt_url(emu: SlackEmulator) -> AsyncIterator[tuple[str, list[Any]]]:
    seen: list[Any] = []
    runner = web.AppRunner(build_bolt_app(emu, seen).web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/slack/events", seen
    await runner.cleanup()


@pytest.mark.asyncio
async def test_driver_plays_slack_against_a_bolt_app(
    bolt_url: tuple[str, list[Any]], ws: Workspace
) -> None:
    url, seen = bolt_url
    channel = ws.add_channel("incidents", members=["U1"])
    driver = SlackDriver(url, SECRET, ws)
    status, body, trigger_id, response_url = await driver.slash_command("U1", channel.id, "db down")
    assert status == 200 and body == "" and trigger_id and response_url
    [modal] = ws.open_views("U1")
    rejected = await driver.submit_view("U1", modal["id"], {"title": "bad", "severity": "v1"})
    assert rejected.body["errors"] == {"title": "Be specific"} and ws.open_views("U1")
    with pytest.raises(ValueError, match="required input"):
        await driver.submit_view("U1", modal["id"], {"severity": "v1"})
    severity = {"severity": {"type": "static_select", "selected_option": {"value": "v2"}}}
    await driver.submit_view(
        "U1", modal["id"], {"title": "DB down", "severity": severity, "lead": "U2"}
    )
    assert ws.open_views("U1") == [] and seen == [("DB down", "v2", "U2")]
    incident = ws.channel_by_name("inc-bolt")
    assert incident is not None
    message = ws.messages(incident.id)[0]
    await driver.toggle_checkbox("U1", incident.id, message["ts"], "tasks", ["v0", "v2"])
    await driver.click_button("U1", incident.id, message["ts"], "resolve")
    assert seen[1:] == [["v0", "v2"], "inc-bolt"]
    assert ws.messages(incident.id)[0]["text"] == "Resolved"
    with pytest.raises(ValueError, match="no \\['button'\\] element"):
        await driver.click_button("U1", incident.id, message["ts"], "escalate")
    # A button in an ephemeral message: the payload says so and respond() replaces it.
    ws.call("conversations.invite", {"channel": incident.id, "users": "U1"})
    button = message["blocks"][2]
    posted = ws.call(
        "chat.postEphemeral", {"channel": incident.id, "user": "U1", "blocks": [button]}
    )
    clicked = await driver.click_button("U1", incident.id, posted["message_ts"], "resolve")
    assert clicked.status == 200
    assert [(e["text"], e["via"]) for e in ws.ephemerals("U1")] == [("Resolved", "response_url")]


@pytest.mark.asyncio
async def test_driver_bad_signature_and_late_ack(
    bolt_url: tuple[str, list[Any]], ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = bolt_url
    channel = ws.add_channel("incidents", members=["U1"])
    driver = SlackDriver(url, SECRET, ws)
    assert (await driver.slash_command("U1", channel.id, secret="wrong")).status == 401
    assert (
        await driver.slash_command("U1", channel.id, timestamp=int(time.time()) - 600)
    ).status == 401
    monkeypatch.setattr(emulator.driver, "ACK_DEADLINE", 0.0)
    late = await driver.slash_command("U1", channel.id, "slow", retry_num=1)
    assert not late.acked_in_time
    assert ws.ephemerals("U1")[-1]["text"] == '/incident failed with the error "operation_timeout"'


@pytest.mark.asyncio
async def test_users_info_tells_bots_and_deactivated_users_apart(
    client: AsyncWebClient, ws: Workspace
) -> None:
    assert (await client.users_info(user="UBOT"))["user"]["is_bot"] is True
    ws.deactivate_user("U1")
    user = (await client.users_info(user="U1"))["user"]  # as Slack: still known, marked
    assert user["deleted"] is True and user["is_bot"] is False
    assert await error_of(client.users_info(user="U404")) == "user_not_found"
