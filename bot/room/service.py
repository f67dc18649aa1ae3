"""Recording the incident channel as it happens, and reading someone in.

Slack's events (messages, edits, deletions, thread replies, 📌/⏱ reactions, pins
and joins) are appended to the incident's event log as `room.*` events, once per
Slack `event_id` (the idempotency key is claimed in the same transaction, so a
retried delivery never records twice). The post-mortem folds them back into the
channel as it stood at the close (bot/postmortem/room.py), and reads Slack's
history only where nobody was listening (`storage.room.spans`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot import logs
from bot.commands import clean
from bot.context import Context, Service
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.gateway import ChatError
from bot.incidents.service import Request
from bot.postmortem.history import KEY_REACTIONS, Names
from bot.postmortem.room import STALE_AFTER
from bot.postmortem.timeline import people_in
from bot.room import summary
from storage import incidents as store
from storage import room as room_store
from storage.models import Event, Incident

log = logging.getLogger(__name__)

KINDS = ("message", "edited", "deleted", "reaction", "pin", "joined")


@dataclass(frozen=True)
class RoomEvent:
    """One Slack event about an incident channel, as the handler parsed it."""

    event_id: str
    kind: str  # one of KINDS
    channel: str
    user: str | None
    at: datetime  # when it happened in Slack
    details: dict[str, Any]  # ts, and as the kind has them: thread_ts, text, files, reaction…


class RoomService(Service):
    def __init__(self, context: Context, *, owner: str) -> None:
        super().__init__(context)
        self._owner = owner
        # This process counts as listening from the first event Slack delivers to it:
        # until then nothing shows that Slack sends it events at all.
        self._hearing = False

    async def record(self, event: RoomEvent) -> None:
        """Append the event to its incident's log once; read a person who joined in."""
        assert event.kind in KINDS, event.kind
        if not self._hearing:
            self._hearing = True
            await self.heartbeat()
        if event.kind == "reaction" and event.details.get("reaction") not in KEY_REACTIONS:
            return
        incident_id = await self._db.run(self._append, event)
        if incident_id is None or event.kind != "joined" or not event.user:
            return
        logs.incident_id.set(incident_id)
        if event.user == await self._chat.bot_user_id():
            return
        try:
            text = await self._read_in(incident_id)
            await self._chat.post_ephemeral(event.channel, event.user, text)
        except ChatError as exc:  # they can still ask with /incident summary
            log.warning("could not read %s in: %s", event.user, exc.code)

    def _append(self, session: Session, event: RoomEvent) -> int | None:
        incident = store.by_channel(session, event.channel)
        if incident is None or incident.closed_at is not None:
            return None  # not an incident channel, or its post-mortem is compiled
        if not store.claim_request(session, f"event:{event.event_id}", self._clock.now()):
            return None  # a retry of an event already recorded
        kind, actor = f"room.{event.kind}", event.user or "slack"
        details = dict(event.details)
        if "text" in details:  # masked once, here: the post-mortem relies on it
            details["text"] = clean(str(details["text"]))
        store.append_event(session, incident, kind, actor, event.at, **details)
        return incident.id

    async def summary(self, request: Request) -> str:
        incident = await self._db.run(store.by_channel, request.channel_id)
        if incident is None:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        return await self._read_in(incident.id)

    async def _read_in(self, incident_id: int) -> str:
        incident, events = await self._db.run(_load, incident_id)
        names = Names(self._chat)
        await names.load(people_in(e for e in events if e.type in summary.TRIED))
        return summary.render(self._runbooks, incident, events, names, self._clock.now())

    async def heartbeat(self) -> None:
        """This process is listening now (the sweep calls it every few seconds)."""
        if not self._hearing:
            return
        await self._db.run(room_store.heartbeat, self._owner, self._clock.now(), STALE_AFTER)


def _load(session: Session, incident_id: int) -> tuple[Incident, list[Event]]:
    incident = store.get(session, incident_id)
    assert incident is not None
    return incident, room_store.log_events(session, incident_id)
