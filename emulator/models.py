"""Plain records shared by the emulator's modules (no behaviour beyond tiny predicates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Messages Slack itself writes into a channel's history.
SYSTEM_SUBTYPES = frozenset(
    {"channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_archive"}
)


@dataclass
class Channel:
    """A public or private channel.

    ``messages`` maps ts -> message in ts order (thread replies included);
    ``pins`` are pins.list items (``message`` is the live stored message) plus their ``ts``.
    """

    id: str
    name: str
    creator: str
    created: int
    is_private: bool = False
    members: list[str] = field(default_factory=list)
    topic: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    purpose: dict[str, Any] = field(
        default_factory=lambda: {"value": "", "creator": "", "last_set": 0}
    )
    archived: bool = False
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    pins: list[dict[str, Any]] = field(default_factory=list)
    bookmarks: list[dict[str, Any]] = field(default_factory=list)


# Pseudo-methods in the call log for what the bot sends Slack outside the Web API: a POST
# to a response_url, and the HTTP answer to a slash command or a view submission. Slack
# notifies from their text as from a Web API call's, so tests check them alike.
RESPONSE_URL = "response_url"
COMMAND_RESPONSE = "slash_command.response"
VIEW_RESPONSE = "view_submission.response"


@dataclass
class Call:
    """One request as the bot made it (its arguments as sent, JSON fields decoded), and how
    the emulator answered: a Web API call, or one of the pseudo-methods above."""

    method: str
    args: dict[str, Any]
    ok: bool
    error: str | None = None


def is_top_level(message: dict[str, Any]) -> bool:
    """A message that can own a thread: not a reply, not a Slack system notice."""
    return (
        message.get("thread_ts", message["ts"]) == message["ts"]
        and message.get("subtype") not in SYSTEM_SUBTYPES
    )


@dataclass
class StoredFile:
    """An uploaded file: reserved, then its bytes, then completed and shared into channels."""

    id: str
    name: str
    length: int
    user: str
    created: int
    title: str = ""
    alt_txt: str | None = None
    data: bytes | None = None
    completed: bool = False
    shares: dict[str, list[str]] = field(default_factory=dict)  # channel id -> message ts


@dataclass
class Trigger:
    id: str
    user_id: str
    created: float
    view_id: str | None = None  # set when the interaction happened inside a modal
    used: bool = False


@dataclass
class View:
    id: str
    user_id: str
    data: dict[str, Any]
    trigger_id: str | None = None  # None when pushed by a view_submission's response_action
    is_open: bool = True


@dataclass
class ResponseHook:
    id: str
    channel_id: str
    user_id: str
    created: float
    message_ts: str | None = None
    is_ephemeral: bool = False
    uses: int = 0
