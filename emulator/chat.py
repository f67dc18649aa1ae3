"""chat.*, pins.* and reactions.*: writing and decorating messages."""

from __future__ import annotations

import copy
import re
from typing import Any

from emulator import events
from emulator.api import ApiError, Args
from emulator.blockkit import check_message, with_ids
from emulator.models import SYSTEM_SUBTYPES, Channel
from emulator.state import Handler, WorkspaceState

REACTION_NAME = re.compile(r"[a-z0-9_+'-]+")


def message_content(
    text: str | None, blocks: Any, attachments: Any, metadata: Any = None
) -> dict[str, Any]:
    """The stored form of a message body, with the ids Slack fills in."""
    content: dict[str, Any] = {"text": text or ""}
    if blocks:
        content["blocks"] = with_ids(blocks)
    if attachments:
        content["attachments"] = [
            {"id": i, **copy.deepcopy(att)} for i, att in enumerate(attachments, start=1)
        ]
    if isinstance(metadata, dict):
        content["metadata"] = copy.deepcopy(metadata)
    return content


def post_message(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """chat.postMessage: the bot must be in the channel; names work for public channels."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"), by_name=True)
    ws.require_member(channel)
    text, blocks, attachments = a.text("text"), a.json("blocks"), a.json("attachments")
    check_message(text, blocks, attachments)
    thread_ts = a.text("thread_ts")
    parent = channel.messages.get(thread_ts or "")
    if parent is not None and parent.get("subtype") in SYSTEM_SUBTYPES:
        raise ApiError("cannot_reply_to_message")
    fields = {
        **ws.bot_message_fields(),
        **message_content(text, blocks, attachments, a.json("metadata")),
    }
    message = ws.append_message(
        channel,
        fields,
        thread_ts=thread_ts,
        broadcast=bool(thread_ts) and a.flag("reply_broadcast"),
    )
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}


def update(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """chat.update: only the bot's own messages; text without blocks drops the old blocks."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    if channel.archived:
        raise ApiError("is_inactive")
    message = ws.find_message(channel, a.required("ts", "message_not_found"))
    if message.get("bot_id") != ws.bot_id:
        raise ApiError("cant_update_message")
    text, blocks, attachments = a.text("text"), a.json("blocks"), a.json("attachments")
    if text is None and blocks is None and attachments is None:
        raise ApiError("no_text")
    new_text = text if text is not None else message.get("text")
    new_blocks = message.get("blocks") if blocks is None and text is None else blocks
    new_attachments = message.get("attachments") if attachments is None else attachments
    check_message(new_text, new_blocks, new_attachments)
    content = message_content(new_text, new_blocks, new_attachments)
    edit(ws, channel, message, content, ws.bot_user_id, mark_edited=blocks is None)
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message["ts"],
        "text": message["text"],
        "message": message,
    }


def edit(
    ws: WorkspaceState,
    channel: Channel,
    message: dict[str, Any],
    content: dict[str, Any],
    user: str,
    *,
    mark_edited: bool = True,
) -> None:
    """Replace a message's body in place and send `message_changed`."""
    before = copy.deepcopy(message)
    for key in ("text", "blocks", "attachments"):
        message.pop(key, None)
    message.update(content)
    event_ts = ws.next_ts()
    if mark_edited:
        message["edited"] = {"user": user, "ts": event_ts}
    ws.emit(events.changed_event(channel, before, message, event_ts), channel.id)


def delete(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    message = ws.find_message(channel, a.required("ts", "message_not_found"))
    if message.get("bot_id") != ws.bot_id:
        raise ApiError("cant_delete_message")
    delete_message(ws, channel, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def delete_message(ws: WorkspaceState, channel: Channel, message: dict[str, Any]) -> None:
    """Remove a message; a parent with replies leaves a tombstone, as in Slack."""
    ws.emit(events.deleted_event(channel, message, ws.next_ts()), channel.id)
    ts = message["ts"]
    channel.pins[:] = [p for p in channel.pins if p["ts"] != ts]
    if message.get("reply_count"):
        channel.messages[ts] = {
            "type": "message",
            "subtype": "tombstone",
            "ts": ts,
            "thread_ts": ts,
            "text": "This message was deleted.",
            "user": "USLACKBOT",
            "hidden": True,
            **{
                k: message[k]
                for k in ("reply_count", "reply_users", "reply_users_count", "latest_reply")
                if k in message
            },
        }
        return
    del channel.messages[ts]
    parent = channel.messages.get(message.get("thread_ts", ts))
    if parent is not None and parent is not message and parent.get("reply_count"):
        parent["reply_count"] -= 1
        replies = [
            m["ts"]
            for m in channel.messages.values()
            if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]
        ]
        parent["latest_reply"] = replies[-1] if replies else parent["ts"]


def post_ephemeral(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """chat.postEphemeral: the recipient must be a member, and so must the bot."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"), by_name=True)
    ws.require_member(channel)
    user_id = a.required("user", "user_not_in_channel")
    if user_id not in channel.members:
        raise ApiError("user_not_in_channel")
    text, blocks, attachments = a.text("text"), a.json("blocks"), a.json("attachments")
    check_message(text, blocks, attachments)
    content = message_content(text, blocks, attachments)
    message = ws.add_ephemeral(
        channel.id, user_id, {**content, "thread_ts": a.text("thread_ts")}, via="chat.postEphemeral"
    )
    return {"ok": True, "message_ts": message["ts"]}


def get_permalink(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    message = ws.find_message(channel, a.required("message_ts", "message_not_found"))
    stamp = message["ts"].replace(".", "")
    link = f"https://{ws.team_domain}.slack.com/archives/{channel.id}/p{stamp}"
    if message.get("thread_ts", message["ts"]) != message["ts"]:
        link += f"?thread_ts={message['thread_ts']}&cid={channel.id}"
    return {"ok": True, "channel": channel.id, "permalink": link}


def _pinned_message(ws: WorkspaceState, a: Args) -> tuple[Channel, dict[str, Any]]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    ts = a.required("timestamp", "no_item_specified")
    ws.require_member(channel)
    return channel, ws.find_message(channel, ts)


def pins_add(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel, message = _pinned_message(ws, a)
    pin(ws, channel, message, ws.bot_user_id)
    return {"ok": True}


def pin(ws: WorkspaceState, channel: Channel, message: dict[str, Any], user: str) -> None:
    """Pin a message for `user` and send `pin_added`."""
    if message.get("subtype") in SYSTEM_SUBTYPES:
        raise ApiError("not_pinnable")
    if any(p["ts"] == message["ts"] for p in channel.pins):
        raise ApiError("already_pinned")
    item = {
        "type": "message",
        "ts": message["ts"],
        "channel": channel.id,
        "created": int(ws.now()),
        "created_by": user,
    }
    channel.pins.append({**item, "message": message})
    message.setdefault("pinned_to", []).append(channel.id)
    ws.emit(events.pin_event(channel, channel.pins[-1], ws.next_ts()), channel.id)


def pins_remove(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel, message = _pinned_message(ws, a)
    if not any(p["ts"] == message["ts"] for p in channel.pins):
        raise ApiError("no_pin")
    channel.pins[:] = [p for p in channel.pins if p["ts"] != message["ts"]]
    message.pop("pinned_to", None)
    return {"ok": True}


def pins_list(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    items = [{k: v for k, v in pin.items() if k != "ts"} for pin in reversed(channel.pins)]
    return {"ok": True, "items": items}


def reactions_add(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    react(
        ws,
        channel,
        a.required("timestamp", "no_item_specified"),
        a.required("name", "invalid_name"),
        ws.bot_user_id,
    )
    return {"ok": True}


def react(ws: WorkspaceState, channel: Channel, ts: str, name: str, user: str) -> None:
    """Add ``user``'s reaction; shared by reactions.add and the human-side test helper."""
    name = name.strip(":")
    if not REACTION_NAME.fullmatch(name):
        raise ApiError("invalid_name")
    message = ws.find_message(channel, ts)
    reactions = message.setdefault("reactions", [])
    reaction = next((r for r in reactions if r["name"] == name), None)
    if reaction is None:
        reaction = {"name": name, "users": [], "count": 0}
        reactions.append(reaction)
    if user in reaction["users"]:
        raise ApiError("already_reacted")
    reaction["users"].append(user)
    reaction["count"] += 1
    ws.emit(events.reaction_event(channel, message, name, user, ws.next_ts()), channel.id)


METHODS: dict[str, Handler] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
    "pins.add": pins_add,
    "pins.remove": pins_remove,
    "pins.list": pins_list,
    "reactions.add": reactions_add,
}
