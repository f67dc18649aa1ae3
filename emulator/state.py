"""The emulated workspace's state and the rules every Web API method shares, with no I/O.

Every Web API method is a :data:`Handler` over a :class:`WorkspaceState`, a small function
in one of the concern modules (:mod:`emulator.conversations`, :mod:`emulator.chat`, …);
:class:`emulator.workspace.Workspace` dispatches to them. Nothing here imports those
modules: they build on this one.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from typing import Any

from emulator import events
from emulator.api import ApiError, Args
from emulator.models import (
    SYSTEM_SUBTYPES,
    Call,
    Channel,
    ResponseHook,
    StoredFile,
    Trigger,
    View,
    is_top_level,
)


class WorkspaceState:
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
        self.files: dict[str, StoredFile] = {}
        self.views: dict[str, View] = {}
        self.triggers: dict[str, Trigger] = {}
        self.response_hooks: dict[str, ResponseHook] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        # The bot token's OAuth scopes; None grants every scope. Set it (e.g. to the
        # manifest's bot scopes) to have methods refuse with `missing_scope` as Slack does.
        self.scopes: frozenset[str] | None = None
        self.call_log: list[Call] = []
        # The Events API (emulator/events_api.py) listens here once a server is running.
        self.on_event: events.Emit | None = None
        self.add_user(bot_user_id, bot_name, is_bot=True)

    # ----------------------------------------------------------------- call log

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


# One Web API method: the state and the request's arguments in, Slack's JSON body out
# (or an ApiError, which the dispatcher turns into Slack's error body).
Handler = Callable[[WorkspaceState, Args], dict[str, Any]]
