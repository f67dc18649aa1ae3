"""conversations.* and bookmarks.*: channel lifecycle, membership and metadata."""

from __future__ import annotations

import re
from typing import Any

from emulator import events
from emulator.api import ApiError, Args, paginate
from emulator.models import Channel
from emulator.state import Handler, WorkspaceState

CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
MAX_NAME = 80
MAX_TOPIC = 250
CHANNEL_TYPES = {"public_channel", "private_channel", "mpim", "im"}


def describe(ws: WorkspaceState, channel: Channel) -> dict[str, Any]:
    """The conversation object Slack returns, as seen by the bot (``is_member``)."""
    return {
        "id": channel.id,
        "name": channel.name,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": channel.is_private,
        "created": channel.created,
        "is_archived": channel.archived,
        "is_general": False,
        "unlinked": 0,
        "name_normalized": channel.name,
        "is_shared": False,
        "is_org_shared": False,
        "is_ext_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
        "context_team_id": ws.team_id,
        "parent_conversation": None,
        "creator": channel.creator,
        "shared_team_ids": [ws.team_id],
        "is_member": ws.bot_user_id in channel.members,
        "topic": dict(channel.topic),
        "purpose": dict(channel.purpose),
        "previous_names": [],
    }


def _channel(ws: WorkspaceState, a: Args, family: str = "manage") -> Channel:
    """The channel named by `channel`, if the bot may see it and its token has the scope
    this method needs for the channel's type."""
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    ws.require_scope(family, private=channel.is_private)
    return channel


def create(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    name = a.text("name") or ""
    if not name:
        raise ApiError("invalid_name_required")
    if len(name) > MAX_NAME:
        raise ApiError("invalid_name_maxlength")
    if not CHANNEL_NAME.fullmatch(name):
        raise ApiError("invalid_name_specials")
    if not name.strip("-_"):
        raise ApiError("invalid_name_punctuation")
    ws.require_scope("manage", private=a.flag("is_private"))
    if ws.channel_by_name(name) is not None:
        raise ApiError("name_taken")  # names are unique across public and private channels
    channel = ws.add_channel(
        name, members=[ws.bot_user_id], is_private=a.flag("is_private"), creator=ws.bot_user_id
    )
    ws.system_message(
        channel, "channel_join", ws.bot_user_id, f"<@{ws.bot_user_id}> has joined the channel"
    )
    return {"ok": True, "channel": describe(ws, channel)}


def info(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = _channel(ws, a, "read")
    result = describe(ws, channel)
    if a.flag("include_num_members"):
        result["num_members"] = len(channel.members)
    return {"ok": True, "channel": result}


def list_(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    types = set(a.ids("types") or ["public_channel"])
    if not types <= CHANNEL_TYPES:
        raise ApiError("invalid_types")
    for kind, private in (("public_channel", False), ("private_channel", True)):
        if kind in types:
            ws.require_scope("read", private=private)
    exclude_archived = a.flag("exclude_archived")
    wanted = [
        c
        for c in ws.channels.values()
        if not (exclude_archived and c.archived)
        and (
            ("private_channel" in types and c.is_private and ws.bot_user_id in c.members)
            or ("public_channel" in types and not c.is_private)
        )
    ]
    page, cursor = paginate(wanted, a, lambda c: c.id, prefix="team", default=100, maximum=1000)
    channels = [{**describe(ws, c), "num_members": len(c.members)} for c in page]
    return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": cursor}}


def join(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel", "channel_not_found"))
    if channel.is_private:  # only an invitation lets anyone into a private channel
        raise ApiError("method_not_supported_for_channel_type")
    ws.require_scope("join", private=False)
    if channel.archived:
        raise ApiError("is_archived")
    if ws.bot_user_id in channel.members:
        return {
            "ok": True,
            "channel": describe(ws, channel),
            "warning": "already_in_channel",
            "response_metadata": {"warnings": ["already_in_channel"]},
        }
    add_member(ws, channel, ws.bot_user_id, inviter=None)
    return {"ok": True, "channel": describe(ws, channel)}


def add_member(ws: WorkspaceState, channel: Channel, user_id: str, *, inviter: str | None) -> None:
    """A user joins (or is invited): the join notice, then `member_joined_channel`."""
    channel.members.append(user_id)
    extra = {"inviter": inviter} if inviter else {}
    ws.system_message(
        channel, "channel_join", user_id, f"<@{user_id}> has joined the channel", **extra
    )
    ws.emit(events.joined_event(ws.team_id, channel, user_id, inviter, ws.next_ts()), channel.id)


def invite(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    """All-or-nothing like Slack: one bad user fails the call unless ``force`` is set."""
    channel = _channel(ws, a)
    ws.require_member(channel)
    user_ids = a.ids("users")
    if not user_ids:
        raise ApiError("no_user")
    errors: list[dict[str, Any]] = []
    valid: list[str] = []
    for user_id in dict.fromkeys(user_ids):
        error = _invite_error(ws, channel, user_id)
        if error:
            errors.append({"user": user_id, "ok": False, "error": error})
        else:
            valid.append(user_id)
    if errors and not a.flag("force"):
        raise ApiError(errors[0]["error"], errors=errors)
    for user_id in valid:
        add_member(ws, channel, user_id, inviter=ws.bot_user_id)
    result: dict[str, Any] = {"ok": True, "channel": describe(ws, channel)}
    if errors:
        result["errors"] = errors
    return result


def _invite_error(ws: WorkspaceState, channel: Channel, user_id: str) -> str | None:
    if user_id == ws.bot_user_id:
        return "cant_invite_self"
    if user_id not in ws.users or ws.users[user_id].get("deleted"):
        return "user_not_found"
    if user_id in channel.members:
        return "already_in_channel"
    return None


def kick(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = _channel(ws, a)
    ws.require_member(channel)
    user_id = a.required("user", "user_not_found")
    if user_id == ws.bot_user_id:
        raise ApiError("cant_kick_self")
    ws.require_user(user_id)
    if user_id not in channel.members:
        raise ApiError("not_in_channel")
    channel.members.remove(user_id)
    ws.system_message(channel, "channel_leave", user_id, f"<@{user_id}> has left the channel")
    return {"ok": True}


def members(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = _channel(ws, a, "read")
    page, cursor = paginate(
        channel.members, a, lambda u: u, prefix="user", default=100, maximum=1000
    )
    return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}


def set_topic(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    return _set_meta(ws, a, "topic", "channel_topic", "set the channel topic")


def set_purpose(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    return _set_meta(ws, a, "purpose", "channel_purpose", "set the channel purpose")


def _set_meta(ws: WorkspaceState, a: Args, key: str, subtype: str, verb: str) -> dict[str, Any]:
    channel = _channel(ws, a)
    ws.require_member(channel)
    value = a.text(key) or ""
    if len(value) > MAX_TOPIC:
        raise ApiError("too_long")
    setattr(channel, key, {"value": value, "creator": ws.bot_user_id, "last_set": int(ws.now())})
    ws.system_message(channel, subtype, ws.bot_user_id, f"{verb}: {value}", **{key: value})
    return {"ok": True, "channel": describe(ws, channel)}


def archive(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = _channel(ws, a)
    if channel.archived:
        raise ApiError("already_archived")
    ws.require_member(channel)
    ws.system_message(channel, "channel_archive", ws.bot_user_id, "archived the channel")
    channel.archived = True
    return {"ok": True}


def bookmarks_add(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel_id", "channel_not_found"))
    title = a.required("title")
    if a.text("type") != "link":
        raise ApiError("invalid_bookmark_type")
    link = a.text("link") or ""
    if not link.startswith(("http://", "https://")):
        raise ApiError("invalid_link")
    bookmark = {
        "id": ws.mint_id("Bk"),
        "channel_id": channel.id,
        "title": title,
        "link": link,
        "emoji": a.text("emoji"),
        "icon_url": None,
        "type": "link",
        "entity_id": None,
        "date_created": int(ws.now()),
        "date_updated": 0,
        "rank": "U",
        "last_updated_by_user_id": ws.bot_user_id,
        "last_updated_by_team_id": ws.team_id,
        "shortcut_id": None,
        "app_id": ws.app_id,
    }
    channel.bookmarks.append(bookmark)
    return {"ok": True, "bookmark": bookmark}


def bookmarks_list(ws: WorkspaceState, a: Args) -> dict[str, Any]:
    channel = ws.visible_channel(a.required("channel_id", "channel_not_found"))
    return {"ok": True, "bookmarks": channel.bookmarks}


METHODS: dict[str, Handler] = {
    "conversations.create": create,
    "conversations.info": info,
    "conversations.list": list_,
    "conversations.join": join,
    "conversations.invite": invite,
    "conversations.kick": kick,
    "conversations.members": members,
    "conversations.setTopic": set_topic,
    "conversations.setPurpose": set_purpose,
    "conversations.archive": archive,
    "bookmarks.add": bookmarks_add,
    "bookmarks.list": bookmarks_list,
}
