"""Events API listeners for incident channels: parse Slack's event, hand it to the room.

Each listener acks (Bolt answers the Events API when the listener returns) and hands
the recording to `BackgroundWork`, so the inbox stores the request before the ack and
a crash after it replays the event; recording is idempotent by `event_id`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.room.service import RoomEvent
from bot.services import Services
from handlers import payload
from handlers.background import BackgroundWork

# Message subtypes that are not something a person said (joins are their own event).
SKIPPED_SUBTYPES = frozenset({"channel_join", "channel_leave", "message_replied"})


def register(app: AsyncApp, services: Services, background: BackgroundWork) -> None:
    room = services.room

    def hand_over(body: dict[str, Any], kind: str, channel: str, user: str, **details: Any) -> None:
        event = payload.at(body, "event")
        stamp = payload.text(event, "event_ts") or payload.text(event, "ts")
        event_id = payload.text(body, "event_id")
        if not event_id or not channel or not _is_ts(stamp):
            return  # nothing Slack sends; nothing to record it by
        at = datetime.fromtimestamp(float(stamp), UTC)
        background.spawn(room.record(RoomEvent(event_id, kind, channel, user or None, at, details)))

    @app.event("message")
    async def message(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        subtype = payload.text(event, "subtype")
        channel = payload.text(event, "channel")
        if subtype == "message_changed":
            changed = payload.at(event, "message")
            hand_over(
                body,
                "edited",
                channel,
                payload.text(changed, "user"),
                ts=payload.text(changed, "ts"),
                text=payload.text(changed, "text"),
            )
        elif subtype == "message_deleted":
            before = payload.at(event, "previous_message")
            hand_over(
                body,
                "deleted",
                channel,
                payload.text(before, "user"),
                ts=payload.text(event, "deleted_ts"),
            )
        elif subtype not in SKIPPED_SUBTYPES:
            hand_over(body, "message", channel, payload.text(event, "user"), **_said(event))

    @app.event("reaction_added")
    async def reaction(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        item = payload.at(event, "item")
        if payload.text(item, "type") == "message":
            hand_over(
                body,
                "reaction",
                payload.text(item, "channel"),
                payload.text(event, "user"),
                ts=payload.text(item, "ts"),
                reaction=payload.text(event, "reaction"),
            )

    @app.event("pin_added")
    async def pin(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        item = payload.at(event, "item")
        if payload.text(item, "type") == "message":
            hand_over(
                body,
                "pin",
                payload.text(event, "channel_id"),
                payload.text(event, "user"),
                ts=payload.text(item, "message", "ts"),
            )

    @app.event("member_joined_channel")
    async def joined(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        hand_over(body, "joined", payload.text(event, "channel"), payload.text(event, "user"))


def _said(event: dict[str, Any]) -> dict[str, Any]:
    """What the post-mortem needs of a new message."""
    said: dict[str, Any] = {
        "ts": payload.text(event, "ts"),
        # As Slack sends it (entities encoded), like the history the post-mortem also reads.
        "text": payload.text(event, "text"),
    }
    for key in ("thread_ts", "subtype", "bot_id"):  # bot_id: an integration's post
        if payload.text(event, key):
            said[key] = payload.text(event, key)
    files = [payload.text(f, "name") for f in payload.dicts(event.get("files"))]
    if files:
        said["files"] = files
    return said


def _is_ts(value: str) -> bool:
    seconds, _, micros = value.partition(".")
    return seconds.isdigit() and (not micros or micros.isdigit())
