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
deleted parent with replies stays as "(deleted)" to hold them. The text of every
message is masked (bot.redact) when it is recorded or read back, so the compiler
need not mask the channel's lines again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.gateway import ChatGateway, Message, Reaction, SharedFile
from bot.postmortem.history import PAGE_SIZE, ChannelDigest, Names, Reader, ts_of
from bot.redact import redact
from storage.room import Recorded

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
    recorded: list[Recorded] = field(default_factory=list)  # `room.*`, in order
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


@dataclass(slots=True)
class _State:
    """A recorded message as it stands, read by `Reader` like a `Message` (a mutable
    twin: a 50k channel builds no second, frozen copy of each)."""

    ts: str
    user: str | None
    text: str
    thread_ts: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    files: tuple[SharedFile, ...] = ()
    edited: bool = False
    reactions: tuple[Reaction, ...] = ()
    reply_count: int = 0
    block_ids: tuple[str, ...] = ()

    @property
    def deleted(self) -> bool:
        return self.subtype == "tombstone"

    def react(self, name: str, user: str) -> None:
        others = [r for r in self.reactions if r.name != name]
        users = next((r.users for r in self.reactions if r.name == name), ())
        self.reactions = (*others, Reaction(name, (*users, user)))


@dataclass
class _Folded:
    states: dict[str, _State] = field(default_factory=dict)
    pins: set[str] = field(default_factory=set)  # ts pinned by a person
    joined: list[str] = field(default_factory=list)


def _fold(events: Iterable[Recorded], latest: str | None, bot_user_id: str) -> _Folded:
    folded = _Folded()
    limit = float(latest) if latest else None
    states = folded.states
    for event in events:
        p: dict[str, Any] = event.payload
        ts = str(p.get("ts") or "")
        kind = event.type[len(ROOM) :]
        if kind == "joined":
            if event.actor not in folded.joined and event.actor != bot_user_id:
                folded.joined.append(event.actor)
            continue
        if not ts or (limit is not None and float(ts) > limit):
            continue
        state = states.get(ts)
        if kind == "message":
            files = tuple(SharedFile("", str(n)) for n in p["files"]) if "files" in p else ()
            states[ts] = _State(
                ts,
                None if event.actor == "slack" else event.actor,
                str(p.get("text") or ""),
                p.get("thread_ts"),
                p.get("subtype"),
                p.get("bot_id"),
                files,
            )
        elif kind == "edited" and state is not None:
            state.text, state.edited = str(p.get("text") or ""), True
        elif kind == "deleted" and state is not None:
            state.subtype = "tombstone"
        elif kind == "reaction":
            if state is None:  # on Firebreak's own message, whose events Bolt leaves out
                state = states[ts] = _State(ts, bot_user_id, FIREBREAK_MESSAGE)
            state.react(str(p.get("reaction")), event.actor)
        elif kind == "pin" and event.actor != bot_user_id:
            folded.pins.add(ts)
    return folded


async def read_room(
    chat: ChatGateway,
    names: Names,
    channel: str,
    *,
    bot_user_id: str,
    events: list[Recorded],
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
            # Recorded text was masked when it was recorded; this is masked here.
            crawled.update((m.ts, replace(m, text=redact(m.text))) for m in page)
    if missing:
        pins |= {p.ts for p in await chat.pins(channel) if p.pinned_by != bot_user_id}

    threads: dict[str, list[_State]] = {}
    top: dict[str, _State] = {}
    for ts, state in folded.states.items():
        if state.thread_ts and state.thread_ts != ts:
            if not state.deleted:
                threads.setdefault(state.thread_ts, []).append(state)
        else:
            top[ts] = state
    for parent, replies in threads.items():
        if parent not in top:  # Firebreak's own message, whose events Bolt leaves out
            top[parent] = _State(parent, bot_user_id, FIREBREAK_MESSAGE)
        top[parent].reply_count = len(replies)
    reader = Reader(chat, names, channel, bot_user_id, latest, pins, mask_fetched=True)
    for ts in sorted(set(top) | set(crawled), key=float, reverse=True):
        if ts in crawled:
            await reader.top_level(crawled[ts])  # its thread is read from Slack
            continue
        message = top[ts]
        known = sorted(threads[ts], key=lambda m: float(m.ts)) if ts in threads else []
        if message.subtype == "tombstone" and not known:
            continue  # deleted, and nothing hangs on it
        await reader.top_level(message, known)
    digest = reader.finish()
    digest.folded["joins"] += len(folded.joined)
    for user in folded.joined:
        if user not in digest.joined:
            digest.joined.append(user)
    return digest
