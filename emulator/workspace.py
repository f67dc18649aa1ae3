"""The emulated workspace: its state (emulator/state.py), the Web API methods over it, and
what the people in it do, with no I/O.

:meth:`Workspace.call` dispatches to the concern modules' methods and records a call log
so tests can assert on what the bot did (e.g. how many ``conversations.create`` calls
succeeded).
"""

from __future__ import annotations

import copy
from typing import Any

from emulator import chat, conversations, directory, files, history, interactive
from emulator.api import ApiError, Args
from emulator.state import Handler, WorkspaceState

HANDLERS: dict[str, Handler] = {
    **conversations.METHODS,
    **chat.METHODS,
    **history.METHODS,
    **files.METHODS,
    **interactive.METHODS,
    **directory.METHODS,
}


class Workspace(WorkspaceState):
    """The workspace as the bot's Web API calls and the tests' people see it."""

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

    # ------------------------------------------------------------ people acting

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

    # ------------------------------------------------------------ interactivity

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

    # --------------------------------------------------------------------- dump

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
            "files": [files.describe(self, f) for f in self.files.values()],
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
