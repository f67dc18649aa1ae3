"""The emulated workspace: all Slack state and rules, with no I/O.

Every Web API method is a small function in one of the concern modules
(:mod:`emulator.conversations`, :mod:`emulator.chat`, :mod:`emulator.history`,
:mod:`emulator.files`, :mod:`emulator.interactive`, :mod:`emulator.directory`);
:meth:`Workspace.call` dispatches to them and records a call log so tests can assert on what the bot
did (e.g. how many ``conversations.create`` calls succeeded).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from typing import Any

from emulator import chat, conversations, directory, events, files, history, interactive
from emulator.api import ApiError, Args, Handler
from emulator.models import SYSTEM_SUBTYPES, Call, Channel, is_top_level

HANDLERS: dict[str, Handler] = {
    **conversations.METHODS,
    **chat.METHODS,
    **history.METHODS,
    **files.METHODS,
    **interactive.METHODS,
    **directory.METHODS,
}


class Workspace:
    """Users, channels, messages, files, views... of one Slack team, plus the bot's identity."""

    def __init__(
        self,
        *,
        team_id: str = "T0001",
        team_name: str = "Firebreak",
        team_domain: str = "firebreak",
        bot_user_id: str = "UBOT",
        bot_id: str = "B0001",
        app_id: str = "A0001",
        bot_name: str = "firebreak",
        verification_token: str = "verification-token",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.verification_token = verification_token
        self.public_url = "http://127.0.0.1:0"  # set by SlackEmulator once it has a port
        self._clock = clock
        self._clock_offset = 0.0
        self._last_ts_us = 0
        self._counters: dict[str, itertools.count[int]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.ephemeral_messages: list[dict[str, Any]] = []
        self.files: dict[str, files.StoredFile] = {}
        self.views: dict[str, interactive.View] = {}
        self.triggers: dict[str, interactive.Trigger] = {}
        self.response_hooks: dict[str, interactive.ResponseHook] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        # The bot token's OAuth scopes; None grants every scope. Set it (e.g. to the
        # manifest's bot scopes) to have methods refuse with `missing_scope` as Slack does.
        self.scopes: frozenset[str] | None = None
        self.call_log: list[Call] = []
        # The Events API (emulator/events.py) listens here once a server is running.
        self.on_event: events.Emit | None = None
        self.add_user(bot_user_id, bot_name, is_bot=True)

    # ----------------------------------------------------------------- dispatch

    def handles(self, method: str) -> bool:
        return method in HANDLERS

    def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one Web API method as the bot and log it; returns Slack's JSON body."""
        parsed = Args(args or {})
        handler = HANDLERS.get(method)
        try:
            if handler is None:
                raise ApiError("unknown_method")
            result = handler(self, parsed)
        except ApiError as exc:
            result = exc.response()
        self.record_call(method, parsed.raw, result.get("error"))
        return copy.deepcopy(result)

    def record_call(self, method: str, args: dict[str, Any], error: str | None = None) -> None:
        self.call_log.append(Call(method, copy.deepcopy(args), error is None, error))

    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[Call]:
        return [
            c
            for c in self.call_log
            if (method is None or c.method == method) and (ok is None or c.ok == ok)
        ]

    def count(self, method: str, *, ok: bool | None = True) -> int:
        """How many ``method`` calls were made (successful ones by default)."""
        return len(self.calls(method, ok=ok))

    # ---------------------------------------------------------- clock and ids

    def now(self) -> float:
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move emulated time forward, e.g. to expire a trigger_id without sleeping."""
        self._clock_offset += seconds

    def next_ts(self) -> str:
        """A message ts strictly greater than every ts handed out before."""
        micros = max(int(self.now() * 1_000_000), self._last_ts_us + 1)
        self._last_ts_us = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def mint_id(self, prefix: str) -> str:
        counter = self._counters.setdefault(prefix, itertools.count(1))
        return f"{prefix}{next(counter):08X}"

    # ------------------------------------------------------------------ lookups

    def require_user(self, user_id: str | None, error: str = "user_not_found") -> dict[str, Any]:
        user = self.users.get(user_id or "")
        if user is None or user.get("deleted"):
            raise ApiError(error)
        return user

    def visible_channel(self, ref: str | None, *, by_name: bool = False) -> Channel:
        """The channel the bot can see: any public one, private ones only as a member."""
        channel = self.channels.get(ref or "")
        if channel is None and by_name and ref:
            found = self.channel_by_name(ref.lstrip("#"))
            channel = found if found is not None and not found.is_private else None
        if channel is None or (channel.is_private and self.bot_user_id not in channel.members):
            raise ApiError("channel_not_found")
        return channel

    def require_scope(self, family: str, *, private: bool) -> None:
        """Slack checks a conversation method's scope by the channel's type: `channels:*`
        for a public channel, `groups:*` for a private one (`family`: manage, read or
        history; a private channel's manage scope is `groups:write`)."""
        if private:
            needed = f"groups:{'write' if family == 'manage' else family}"
        else:
            needed = f"channels:{family}"
        if self.scopes is not None and needed not in self.scopes:
            raise ApiError("missing_scope", needed=needed, provided=",".join(sorted(self.scopes)))

    def require_member(self, channel: Channel, *, allow_archived: bool = False) -> None:
        if channel.archived and not allow_archived:
            raise ApiError("is_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")

    def find_message(self, channel: Channel, ts: str | None) -> dict[str, Any]:
        message = channel.messages.get(ts or "")
        if message is None:
            raise ApiError("message_not_found")
        return message

    # ------------------------------------------------------------- message store

    def append_message(
        self,
        channel: Channel,
        fields: dict[str, Any],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> dict[str, Any]:
        """Store a message; replies bump their parent like Slack's thread bookkeeping does.

        A ``thread_ts`` that names no top-level message is accepted but the reply
        never shows up anywhere, which is what Slack does with a wrong thread_ts.
        """
        message: dict[str, Any] = {
            "type": "message",
            "ts": self.next_ts(),
            **fields,
            "team": self.team_id,
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = channel.messages.get(thread_ts)
            if parent is not None and is_top_level(parent):
                message["parent_user_id"] = parent.get("user")
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                reply_users = parent.setdefault("reply_users", [])
                if message.get("user") not in reply_users:
                    reply_users.append(message.get("user"))
                parent["reply_users_count"] = len(reply_users)
                parent["latest_reply"] = message["ts"]
            if broadcast:
                message["subtype"] = "thread_broadcast"
        channel.messages[message["ts"]] = message
        self.emit(events.message_event(channel, message), channel.id)
        return message

    def emit(self, event: dict[str, Any], channel_id: str) -> None:
        """Hand an event to the Events API (which sends what the app subscribed to)."""
        if self.on_event is not None:
            self.on_event(event, channel_id)

    def bot_message_fields(self) -> dict[str, Any]:
        return {
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
            },
        }

    def system_message(
        self, channel: Channel, subtype: str, user: str, text: str, **extra: Any
    ) -> None:
        self.append_message(channel, {"subtype": subtype, "user": user, "text": text, **extra})

    def add_ephemeral(
        self, channel_id: str, user_id: str, payload: dict[str, Any], via: str
    ) -> dict[str, Any]:
        message = {
            "channel": channel_id,
            "user": user_id,
            "ts": self.next_ts(),
            "text": payload.get("text") or "",
            "blocks": copy.deepcopy(payload.get("blocks")) or [],
            "thread_ts": payload.get("thread_ts"),
            "via": via,
        }
        self.ephemeral_messages.append(message)
        return message

    # ------------------------------------------------------------- test helpers

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        is_bot: bool = False,
        email: str | None = None,
        tz: str = "UTC",
    ) -> dict[str, Any]:
        real = real_name or name
        profile: dict[str, Any] = {
            "real_name": real,
            "display_name": name,
            "real_name_normalized": real,
            "display_name_normalized": name,
        }
        if email:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = self.bot_id
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": tz,
            "profile": profile,
            "is_bot": is_bot,
            "is_admin": False,
            "is_app_user": False,
            "updated": int(self.now()),
        }
        self.users[user_id] = user
        return user

    def deactivate_user(self, user_id: str) -> None:
        """An admin deactivates the account: it stays known to users.info, marked deleted."""
        self.users[user_id]["deleted"] = True

    def add_channel(
        self,
        name: str,
        *,
        members: list[str] | tuple[str, ...] = (),
        is_private: bool = False,
        creator: str | None = None,
    ) -> Channel:
        """Create a channel directly (no rules applied), e.g. a pre-existing #incidents."""
        channel = Channel(
            self.mint_id("C"),
            name,
            creator or next(iter(members), self.bot_user_id),
            int(self.now()),
            is_private,
            list(members),
        )
        self.channels[channel.id] = channel
        return channel

    def add_usergroup(
        self, group_id: str, handle: str, users: list[str], *, name: str | None = None
    ) -> dict[str, Any]:
        group = {
            "id": group_id,
            "team_id": self.team_id,
            "handle": handle,
            "name": name or handle,
            "users": list(users),
        }
        self.usergroups[group_id] = group
        return group

    def post_as_user(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """A human's message (bypasses the bot's membership rules), e.g. incident chatter."""
        target = self.channels.get(channel) or self.channel_by_name(channel.lstrip("#"))
        if target is None:
            raise KeyError(f"no channel {channel!r}")
        self.require_user(user)
        fields = {"user": user, "text": text, "client_msg_id": self.mint_id("msg-")}
        return copy.deepcopy(self.append_message(target, fields, thread_ts=thread_ts))

    def add_reaction(self, channel_id: str, ts: str, name: str, user: str) -> None:
        """A human reacting to a message (e.g. :pushpin: to mark a timeline event)."""
        chat.react(self, self.channels[channel_id], ts, name, user)

    def edit_as_user(self, channel_id: str, ts: str, user: str, text: str) -> None:
        """A human editing their own message (Slack sends `message_changed`)."""
        channel = self.channels[channel_id]
        message = self.find_message(channel, ts)
        if message.get("user") != user:
            raise ApiError("cant_update_message")
        chat.edit(self, channel, message, {"text": text}, user)

    def delete_as_user(self, channel_id: str, ts: str, user: str) -> None:
        """A human deleting their own message (Slack sends `message_deleted`)."""
        channel = self.channels[channel_id]
        message = self.find_message(channel, ts)
        if message.get("user") != user:
            raise ApiError("cant_delete_message")
        chat.delete_message(self, channel, message)

    def pin_as_user(self, channel_id: str, ts: str, user: str) -> None:
        """A human pinning a message (Slack sends `pin_added`)."""
        channel = self.channels[channel_id]
        chat.pin(self, channel, self.find_message(channel, ts), user)

    def join_as_user(self, channel_id: str, user: str) -> None:
        """A human joining a public channel (Slack sends `member_joined_channel`)."""
        channel = self.channels[channel_id]
        self.require_user(user)
        if user not in channel.members:
            conversations.add_member(self, channel, user, inviter=None)

    def channel_by_name(self, name: str) -> Channel | None:
        return next((c for c in self.channels.values() if c.name == name), None)

    def messages(self, channel_id: str, *, system: bool = False) -> list[dict[str, Any]]:
        """Every message in the channel (thread replies included) in ts order.

        Slack's own join/topic/archive notices are left out unless ``system`` is true.
        """
        stored = self.channels[channel_id].messages.values()
        return [
            copy.deepcopy(m) for m in stored if system or m.get("subtype") not in SYSTEM_SUBTYPES
        ]

    def ephemerals(
        self, user_id: str | None = None, channel_id: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(m)
            for m in self.ephemeral_messages
            if (user_id is None or m["user"] == user_id)
            and (channel_id is None or m["channel"] == channel_id)
        ]

    def file_bytes(self, file_id: str) -> bytes | None:
        return self.files[file_id].data

    def open_views(self, user_id: str) -> list[dict[str, Any]]:
        """The user's modal stack, root first."""
        return [
            copy.deepcopy(v.data) for v in self.views.values() if v.user_id == user_id and v.is_open
        ]

    def mint_trigger(self, user_id: str, view_id: str | None = None) -> str:
        return interactive.mint_trigger(self, user_id, view_id)

    def mint_response_url(
        self,
        channel_id: str,
        user_id: str,
        *,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
    ) -> str:
        return interactive.mint_response_url(self, channel_id, user_id, message_ts, is_ephemeral)

    def respond(self, hook_id: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply a POST to a response_url; returns (HTTP status, JSON body)."""
        return interactive.respond(self, hook_id, payload)

    def dump(self) -> dict[str, Any]:
        """Everything, JSON-ready, for tests that only see the emulator over HTTP."""
        return {
            "team": {
                "id": self.team_id,
                "name": self.team_name,
                "domain": self.team_domain,
                "bot_user_id": self.bot_user_id,
            },
            "users": list(self.users.values()),
            "channels": [
                {
                    **conversations.describe(self, c),
                    "members": c.members,
                    "messages": list(c.messages.values()),
                    "pins": c.pins,
                    "bookmarks": c.bookmarks,
                }
                for c in self.channels.values()
            ],
            "ephemerals": self.ephemeral_messages,
            "files": [f.describe(self) for f in self.files.values()],
            "views": [
                {**v.data, "user_id": v.user_id, "trigger_id": v.trigger_id, "is_open": v.is_open}
                for v in self.views.values()
            ],
            "usergroups": list(self.usergroups.values()),
            "calls": [
                {"method": c.method, "args": c.args, "ok": c.ok, "error": c.error}
                for c in self.call_log
            ],
        }
