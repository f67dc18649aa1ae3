"""The channel as it stood at the close, from the event log, and from Slack only for gaps.

While Firebreak listens, every message, edit, deletion, thread reply, 📌/⏱ reaction
and pin in the channel is in the log as a `room.*` event (bot/room/service.py), so
the post-mortem folds those instead of crawling the channel.

**The gaps.** Each Firebreak process writes a listening span (`storage.room`): the
row is written when the first event Slack delivers to it is recorded (before that,
nothing shows Slack sends it events at all) and its `seen_at` moves forward on every
sweep (10 s); a sweep that finds its own span older than 30 s starts a new one. A
span last seen within those 30 s counts as running until now. A gap is any part of
the incident's window, from the declaration to the close, that no span covers:

- before the bot listened at all (an incident declared before the events were
  subscribed, or before the first process with this code started);
- while every process was down or stalled.

Only there is `conversations.history` read (`oldest`/`latest` bounded, inclusive),
with the full thread of every message found. Slack retries an event it could not
deliver (after about 1 s, 1 min and 5 min), so part of a gap may also be recorded;
a message found both ways is taken from Slack, which has its final state.
Known limit: a reply posted during a gap, in a thread whose parent was posted
while listening, is not read back (finding it would take the whole channel's history).

Edits replace the text (marked edited); a deleted message is left out, and a
deleted parent with replies stays as "(deleted)" to hold them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.gateway import ChatGateway, Message, Reaction, SharedFile
from bot.postmortem.history import PAGE_SIZE, ChannelDigest, Names, Reader, ts_of
from storage.models import Event

# A listening span not extended for this long is over: the next heartbeat starts another.
STALE_AFTER = timedelta(seconds=30)
ROOM = "room."
FIREBREAK_MESSAGE = "(a Firebreak message)"

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Listening:
    """What the log knows of the channel: when Firebreak listened, and the ts of each
    message the outbox delivered by its marker block (to hang replies on events)."""

    spans: list[Span]
    own_messages: dict[str, str] = field(default_factory=dict)


def gaps(spans: Iterable[Span], start: datetime, end: datetime, now: datetime) -> list[Span]:
    """The parts of [start, end] no listening span covers."""
    found: list[Span] = []
    cursor = start
    for began, seen in sorted(spans):
        if now - seen <= STALE_AFTER:
            seen = max(seen, now)  # still listening
        if began > cursor:
            found.append((cursor, min(began, end)))
        cursor = max(cursor, seen)
        if cursor >= end:
            break
    if cursor < end:
        found.append((cursor, end))
    return [(a, b) for a, b in found if b > a]


@dataclass
class _State:
    user: str | None
    text: str
    thread_ts: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    files: tuple[str, ...] = ()
    edited: bool = False
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)

    def message(self, ts: str, reply_count: int = 0) -> Message:
        return Message(
            ts=ts,
            user=self.user,
            text=self.text,
            thread_ts=self.thread_ts,
            reply_count=reply_count,
            subtype="tombstone" if self.deleted else self.subtype,
            bot_id=self.bot_id,
            reactions=tuple(Reaction(n, tuple(u)) for n, u in self.reactions.items()),
            files=tuple(SharedFile("", name) for name in self.files),
            edited=self.edited,
        )


@dataclass
class _Folded:
    states: dict[str, _State] = field(default_factory=dict)
    pins: set[str] = field(default_factory=set)  # ts pinned by a person
    joined: list[str] = field(default_factory=list)


def _fold(events: Iterable[Event], latest: str | None, bot_user_id: str) -> _Folded:
    folded = _Folded()
    limit = float(latest) if latest else None
    for event in events:
        p: dict[str, Any] = event.payload or {}
        ts = str(p.get("ts") or "")
        kind = event.type.removeprefix(ROOM)
        if kind == "joined":
            if event.actor not in folded.joined and event.actor != bot_user_id:
                folded.joined.append(event.actor)
            continue
        if not ts or (limit is not None and float(ts) > limit):
            continue
        state = folded.states.get(ts)
        if kind == "message":
            folded.states[ts] = _State(
                user=None if event.actor == "slack" else event.actor,
                text=str(p.get("text") or ""),
                thread_ts=p.get("thread_ts"),
                subtype=p.get("subtype"),
                bot_id=p.get("bot_id"),
                files=tuple(p.get("files") or ()),
            )
        elif kind == "edited" and state is not None:
            state.text, state.edited = str(p.get("text") or ""), True
        elif kind == "deleted" and state is not None:
            state.deleted = True
        elif kind == "reaction":
            state = folded.states.setdefault(ts, _State(bot_user_id, FIREBREAK_MESSAGE))
            state.reactions.setdefault(str(p.get("reaction")), []).append(event.actor)
        elif kind == "pin" and event.actor != bot_user_id:
            folded.pins.add(ts)
    return folded


async def read_room(
    chat: ChatGateway,
    names: Names,
    channel: str,
    *,
    bot_user_id: str,
    events: list[Event],
    missing: list[Span],
    latest: str | None,
) -> ChannelDigest:
    """The digest of the channel: the recorded `events`, and Slack's history in `missing`."""
    folded = _fold(events, latest, bot_user_id)
    pins = set(folded.pins)
    crawled: dict[str, Message] = {}
    for began, ended in missing:
        upto = ts_of(ended) if latest is None else min(ts_of(ended), latest, key=float)
        async for page in chat.history(
            channel, page_size=PAGE_SIZE, latest=upto, oldest=ts_of(began)
        ):
            crawled.update((m.ts, m) for m in page)
    if missing:
        pins |= {p.ts for p in await chat.pins(channel) if p.pinned_by != bot_user_id}

    threads: dict[str, list[Message]] = {}
    top: dict[str, Message] = {}
    for ts, state in folded.states.items():
        if state.thread_ts and state.thread_ts != ts:
            if not state.deleted:
                threads.setdefault(state.thread_ts, []).append(state.message(ts))
        else:
            top[ts] = state.message(ts)
    for parent, replies in threads.items():
        if parent not in top:  # Firebreak's own message, whose events Bolt leaves out
            top[parent] = Message(parent, bot_user_id, FIREBREAK_MESSAGE)
        top[parent] = replace(top[parent], reply_count=len(replies))
    reader = Reader(chat, names, channel, bot_user_id, latest, pins)
    for ts in sorted(set(top) | set(crawled), key=float, reverse=True):
        if ts in crawled:
            await reader.top_level(crawled[ts])  # its thread is read from Slack
            continue
        message = top[ts]
        known = sorted(threads.get(ts, []), key=lambda m: float(m.ts))
        if message.subtype == "tombstone" and not known:
            continue  # deleted, and nothing hangs on it
        await reader.top_level(message, known)
    digest = reader.finish()
    digest.folded["joins"] += len(folded.joined)
    for user in folded.joined:
        if user not in digest.joined:
            digest.joined.append(user)
    return digest
