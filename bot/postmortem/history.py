"""Reading an incident channel back, page by page, for the post-mortem.

The whole channel is read (`conversations.history`, 200 a page, plus
`conversations.replies` for every thread) and each raw page is turned into
compact timeline lines before the next one is fetched, so a 50,000-message
channel never sits in memory as Slack payloads. What is not a person
talking is folded into counts: joins, topic changes, edits (marked), file
shares (named, not dumped) and Firebreak's own messages, which only mirror
the event log (unless a thread or a person's pin makes them matter).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.gateway import ChatGateway, Reaction, SharedFile
from bot.postmortem.markdown import mentioned_users, shorten, slack_to_plain
from bot.redact import redact

Line = dict[str, Any]

PAGE_SIZE = 200
MESSAGE_MAX = 300  # longer messages are shortened; their permalink is kept
# 📌 and ⏱ from a person make a message a key moment of the timeline.
KEY_REACTIONS = frozenset({"pushpin", "stopwatch"})
JOIN_SUBTYPES = frozenset({"channel_join", "channel_leave"})
NOTICE_SUBTYPES = frozenset(
    {"channel_topic", "channel_purpose", "channel_name", "channel_archive", "pinned_item"}
)


class Names:
    """User ID → display name, through the gateway's cached `users.info`."""

    def __init__(self, chat: ChatGateway) -> None:
        self._chat = chat
        self._known: dict[str, str] = {"firebreak": "Firebreak"}

    async def load(self, user_ids: Iterable[str | None]) -> None:
        for user_id in user_ids:  # loads each once: most calls find everyone known
            if user_id and user_id not in self._known:
                self._known[user_id] = await self._chat.user_name(user_id)

    def __call__(self, user_id: str | None) -> str:
        """The name of a loaded user (the ID for anyone not loaded)."""
        return self._known.get(user_id or "", user_id or "someone")


class ChannelMessage(Protocol):
    """What the reader needs of a message: a `Message` from Slack, or one folded from
    the event log (bot/postmortem/room.py)."""

    @property
    def ts(self) -> str: ...
    @property
    def user(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def block_ids(self) -> tuple[str, ...]: ...
    @property
    def thread_ts(self) -> str | None: ...
    @property
    def reply_count(self) -> int: ...
    @property
    def subtype(self) -> str | None: ...
    @property
    def bot_id(self) -> str | None: ...
    @property
    def reactions(self) -> tuple[Reaction, ...]: ...
    @property
    def files(self) -> tuple[SharedFile, ...]: ...
    @property
    def edited(self) -> bool: ...


@dataclass
class ChannelDigest:
    """The people's side of the channel, oldest first, replies under their parent."""

    lines: list[Line] = field(default_factory=list)
    folded: Counter[str] = field(default_factory=Counter)
    posts: Counter[str] = field(default_factory=Counter)  # user ID → messages
    joined: list[str] = field(default_factory=list)
    threads: int = 0
    # Block IDs of Firebreak's messages kept as lines → their ts: the outbox's marker
    # block ties a message to the event that posted it.
    own_blocks: dict[str, str] = field(default_factory=dict)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_of_ts(ts: str) -> str:
    """`iso` of a Slack ts (time.strftime: a third of datetime's cost, per line of 50k)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(float(ts))))


def ts_of(moment: datetime) -> str:
    """A Slack ts for a moment, e.g. to read history up to the close."""
    micros = int(moment.timestamp() * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


async def read_channel(
    chat: ChatGateway,
    names: Names,
    channel: str,
    *,
    bot_user_id: str,
    latest: str | None = None,
) -> ChannelDigest:
    """Stream the channel into a digest, a page at a time."""
    people_pins = {p.ts for p in await chat.pins(channel) if p.pinned_by != bot_user_id}
    reader = Reader(chat, names, channel, bot_user_id, latest, people_pins)
    async for page in chat.history(channel, page_size=PAGE_SIZE, latest=latest):
        for message in page:
            await reader.top_level(message)
    return reader.finish()


class Reader:
    """Turns top-level messages, fed newest first, into the digest's lines."""

    def __init__(
        self,
        chat: ChatGateway,
        names: Names,
        channel: str,
        bot_user_id: str,
        latest: str | None,
        people_pins: set[str],
        *,
        mask_fetched: bool = False,
    ) -> None:
        self.chat = chat
        self.names = names
        self.channel = channel
        self.bot = bot_user_id
        self.latest = latest
        self.people_pins = people_pins
        # Mask the text of the replies it reads from Slack itself (the caller masked
        # the rest): the compiler then need not mask the channel's lines again.
        self.mask_fetched = mask_fetched
        self.digest = ChannelDigest()

    def finish(self) -> ChannelDigest:
        self.digest.lines.reverse()  # fed newest first
        self.digest.joined.reverse()
        return self.digest

    async def top_level(
        self, message: ChannelMessage, known: Sequence[ChannelMessage] | None = None
    ) -> None:
        """One top-level message; its thread is read from Slack unless `known` (oldest first)."""
        if message.thread_ts and message.thread_ts != message.ts:
            return  # a reply also sent to the channel: it is listed under its parent
        replies: list[Line] = []
        if known:
            self.digest.threads += 1
            for reply in known:
                line = await self.line(reply)
                if line is not None:
                    replies.append(line)
        elif message.reply_count and known is None:
            self.digest.threads += 1
            async for page in self.chat.replies(
                self.channel, message.ts, page_size=PAGE_SIZE, latest=self.latest
            ):
                for reply in page:
                    if reply.ts != message.ts:
                        if self.mask_fetched:
                            reply = replace(reply, text=redact(reply.text))
                        line = await self.line(reply)
                        if line is not None:
                            replies.append(line)
        line = await self.line(message, replies)
        if line is not None:
            self.digest.lines.append(line)

    async def line(self, message: ChannelMessage, replies: list[Line] | None = None) -> Line | None:
        """A timeline line for a person's message, or None when it is folded."""
        folded = self.digest.folded
        if message.subtype in JOIN_SUBTYPES:
            folded["joins"] += 1
            user = message.user
            if user and user != self.bot and user not in self.digest.joined:
                self.digest.joined.append(user)
            return None
        if message.subtype in NOTICE_SUBTYPES:
            folded["notices"] += 1
            return None
        own = message.user == self.bot
        if message.subtype == "tombstone":
            # A deleted parent: kept only to hold its replies.
            return (
                self._line(message, "(deleted)", "(message deleted)", replies) if replies else None
            )
        # Pinned or 📌 by a person: people mark the bot's update when it is the one that mattered.
        key = message.ts in self.people_pins or any(
            r.name in KEY_REACTIONS and any(u != self.bot for u in r.users)
            for r in message.reactions
        )
        if own and not replies and not key:
            folded["firebreak_messages"] += 1
            return None
        mentions = mentioned_users(message.text) if "<@" in message.text else ()
        await self.names.load([message.user, *mentions])
        text, cut = shorten(" ".join(slack_to_plain(message.text, self.names).split()), MESSAGE_MAX)
        line = self._line(message, self._who(message), text, replies)
        if own:
            line["firebreak"] = True
            self.digest.own_blocks.update(dict.fromkeys(message.block_ids, message.ts))
        else:
            self.digest.posts[message.user or message.bot_id or "?"] += 1
        if key:
            line["key"] = True
        if cut or key:
            line["link"] = await self.chat.permalink(self.channel, message.ts, message.thread_ts)
        if message.edited:
            folded["edits"] += 1
            line["edited"] = True
        if message.files:
            folded["files"] += 1
            line["files"] = [f.name for f in message.files]
        return line

    @staticmethod
    def _line(message: ChannelMessage, who: str, text: str, replies: list[Line] | None) -> Line:
        line: Line = {
            "kind": "message",
            "ts": message.ts,
            "at": iso_of_ts(message.ts),
            "user": message.user,
            "who": who,
            "text": text,
        }
        if replies:
            line["replies"] = replies
        return line

    def _who(self, message: ChannelMessage) -> str:
        if message.user:
            return self.names(message.user)
        return f"integration {message.bot_id}" if message.bot_id else "someone"
