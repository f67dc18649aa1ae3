"""The events Slack sends for what happens in a channel, shaped as Slack shapes them: a
`message`, its `message_changed` / `message_deleted` subtypes, `reaction_added`,
`pin_added`, `member_joined_channel`. The workspace builds them and hands them to its
`on_event` (an `Emit`); emulator/events_api.py delivers them to the app.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from emulator.models import Channel

Emit = Callable[[dict[str, Any], str], None]


def _channel_type(channel: Channel) -> str:
    return "group" if channel.is_private else "channel"


def message_event(channel: Channel, message: dict[str, Any]) -> dict[str, Any]:
    """A new message (a thread reply carries `thread_ts` and `parent_user_id`)."""
    return {
        **copy.deepcopy(message),
        "channel": channel.id,
        "event_ts": message["ts"],
        "channel_type": _channel_type(channel),
    }


def changed_event(
    channel: Channel, before: dict[str, Any], after: dict[str, Any], event_ts: str
) -> dict[str, Any]:
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "message": copy.deepcopy(after),
        "previous_message": before,
        "channel": channel.id,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": _channel_type(channel),
    }


def deleted_event(channel: Channel, before: dict[str, Any], event_ts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": before["ts"],
        "previous_message": copy.deepcopy(before),
        "channel": channel.id,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": _channel_type(channel),
    }


def reaction_event(
    channel: Channel, message: dict[str, Any], name: str, user: str, event_ts: str
) -> dict[str, Any]:
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": message.get("user"),
        "item": {"type": "message", "channel": channel.id, "ts": message["ts"]},
        "event_ts": event_ts,
    }


def pin_event(channel: Channel, pin: dict[str, Any], event_ts: str) -> dict[str, Any]:
    item = {k: copy.deepcopy(v) for k, v in pin.items() if k != "ts"}
    return {
        "type": "pin_added",
        "user": pin["created_by"],
        "channel_id": channel.id,
        "item": item,
        "item_user": pin["message"].get("user"),
        "pin_count": str(len(channel.pins)),
        "pinned_info": {
            "channel": channel.id,
            "pinned_by": pin["created_by"],
            "pinned_ts": pin["created"],
        },
        "event_ts": event_ts,
    }


def joined_event(
    team_id: str, channel: Channel, user: str, inviter: str | None, event_ts: str
) -> dict[str, Any]:
    event = {
        "type": "member_joined_channel",
        "user": user,
        "channel": channel.id,
        "channel_type": "G" if channel.is_private else "C",
        "team": team_id,
        "event_ts": event_ts,
    }
    if inviter:
        event["inviter"] = inviter
    return event
