"""The narrow interface through which the services talk to Slack.

Services see channels, messages and files, never slack_sdk. The Slack
implementation lives in `handlers/slack_gateway.py`; errors come back as
`ChatError` carrying Slack's own error code (`name_taken`, `ratelimited`, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from bot.messages import Card
from bot.mrkdwn import Mrkdwn


class ChatError(Exception):
    """A chat API call failed. `code` is the platform's error string."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(f"{method} failed: {code}")
        self.method = method
        self.code = code


@dataclass(frozen=True)
class ChannelInfo:
    id: str
    name: str
    creator: str
    is_archived: bool = False


@dataclass(frozen=True)
class Message:
    ts: str
    user: str | None
    text: str
    block_ids: tuple[str, ...] = ()
    # What a history reader needs to fold noise and follow threads.
    thread_ts: str | None = None
    reply_count: int = 0
    subtype: str | None = None
    bot_id: str | None = None
    reactions: tuple[Reaction, ...] = ()
    files: tuple[SharedFile, ...] = ()
    edited: bool = False


@dataclass(frozen=True)
class Reaction:
    name: str
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedFile:
    id: str
    name: str


@dataclass(frozen=True)
class ChatUser:
    """What the workspace says about a person (or a bot) behind a user ID."""

    id: str
    name: str
    is_bot: bool = False
    deleted: bool = False  # deactivated


@dataclass(frozen=True)
class Pin:
    ts: str
    pinned_by: str


class ChatGateway(Protocol):
    async def bot_user_id(self) -> str: ...

    async def create_channel(self, name: str, *, private: bool = False) -> str:
        """Create a public (or private) channel and return its ID
        (`ChatError('…', 'name_taken')`)."""
        ...

    async def find_channel(self, name: str, *, private: bool = False) -> ChannelInfo | None:
        """A public channel by name (with `private`, one of the bot's private channels)."""
        ...

    async def invite(self, channel: str, user_id: str) -> None:
        """Invite one user; already being a member is not an error."""
        ...

    async def set_topic(self, channel: str, topic: str) -> None: ...

    async def post(self, channel: str, message: Mrkdwn | Card, thread_ts: str | None = None) -> str:
        """Post a message and return its `ts`. `channel` may be an ID or a public name.

        A plain message is `Mrkdwn`, so it was escaped, never a string built by hand; a
        `Card` notifies with its paragraphs as shown (`handlers/blockkit.py`).
        """
        ...

    async def update(self, channel: str, ts: str, message: Mrkdwn | Card) -> None: ...

    async def pin(self, channel: str, ts: str) -> None:
        """Pin a message; already pinned is not an error."""
        ...

    async def post_ephemeral(self, channel: str, user_id: str, text: str) -> None: ...

    async def respond(self, response_url: str, text: str) -> None:
        """Answer a command through its response_url, ephemerally."""
        ...

    async def recent_messages(self, channel: str, limit: int = 100) -> list[Message]: ...

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None: ...

    async def upload_file(
        self,
        channel: str,
        filename: str,
        content: str | bytes,
        *,
        title: str | None = None,
        comment: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Upload a file (text, or bytes such as a PNG) into a channel or thread; return
        the file ID."""
        ...

    async def usergroup_members(self, group_id: str) -> list[str]: ...

    async def user(self, user_id: str) -> ChatUser | None:
        """The workspace's record of a user (bots and deactivated users included);
        None when the workspace does not know the ID."""
        ...

    async def user_by_email(self, email: str) -> str | None:
        """The Slack user with this email (`users.lookupByEmail`), or None."""
        ...

    # Reading a channel back (the post-mortem) --------------------------------

    def history(
        self,
        channel: str,
        *,
        page_size: int = 200,
        latest: str | None = None,
        oldest: str | None = None,
    ) -> AsyncIterator[list[Message]]:
        """Top-level messages, newest first, one page per item (cursor paginated).

        Waits out rate limits (429 with Retry-After) instead of failing.
        `latest` (a ts) leaves out anything posted after it, `oldest` anything before.
        """
        ...

    def replies(
        self, channel: str, ts: str, *, page_size: int = 200, latest: str | None = None
    ) -> AsyncIterator[list[Message]]:
        """A thread, oldest first, parent included, one page per item."""
        ...

    async def user_name(self, user_id: str) -> str:
        """A person's name (cached); the ID itself if the user is unknown."""
        ...

    async def pins(self, channel: str) -> list[Pin]: ...

    async def permalink(self, channel: str, ts: str, thread_ts: str | None = None) -> str: ...

    async def file_permalink(self, file_id: str) -> str: ...

    async def archive(self, channel: str) -> None:
        """Archive a channel; already archived is not an error."""
        ...
