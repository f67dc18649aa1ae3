"""Delivering the outbox: the Slack messages owed after a committed change.

A change and the messages it owes commit together; `deliver` sends them in
order, per incident, and on failure keeps the row with a backoff so the
sweeper retries it. A `post` that failed after Slack may have accepted it is
looked up by its marker block before it is sent again, so a retry never
doubles a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.gateway import ChatError, ChatGateway
from bot.incidents import views
from bot.runbooks import Runbooks
from storage import incidents as incident_store
from storage import outbox as store
from storage.db import Database
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(seconds=60)
MARKER_PREFIX = "fb-out-"
SECTION_TEXT_MAX = 3000


def backoff(attempts: int) -> timedelta:
    """2s, 4s, 8s … capped at 5 minutes."""
    return timedelta(seconds=min(300, 2 ** (attempts + 1)))


@dataclass
class DeliveryReport:
    delivered: int = 0
    errors: list[str] = field(default_factory=list)


class Outbox:
    def __init__(
        self, *, db: Database, chat: ChatGateway, runbooks: Runbooks, clock: Clock, owner: str
    ) -> None:
        self._db = db
        self._chat = chat
        self._runbooks = runbooks
        self._clock = clock
        self._owner = owner

    async def deliver(self, incident_id: int | None = None) -> DeliveryReport:
        report = DeliveryReport()
        rows = await self._db.run(store.due, self._clock.now(), incident_id)
        blocked: set[int] = set()  # incidents with a failed row: keep their order
        for row in rows:
            if row.incident_id in blocked:
                continue
            now = self._clock.now()
            if not await self._db.run(store.claim, row.id, self._owner, now, CLAIM_TTL):
                blocked.add(row.incident_id)
                continue
            try:
                ts = await self._send(row)
            except ChatError as exc:
                blocked.add(row.incident_id)
                report.errors.append(exc.code)
                log.warning("outbox %s (%s) failed: %s", row.id, row.kind, exc.code)
                retry_at = self._clock.now() + backoff(row.attempts)
                await self._db.run(store.failed, row.id, exc.code, retry_at)
                continue
            await self._db.run(store.delivered, row.id, ts, self._clock.now())
            report.delivered += 1
        return report

    async def _send(self, row: OutboxMessage) -> str | None:
        if row.kind == "post":
            return await self._post(row)
        incident = await self._db.run(incident_store.get, row.incident_id)
        if incident is None or not incident.channel_id:
            return None
        if row.kind == "invite":
            await self._chat.invite(incident.channel_id, row.text)
        elif row.kind == "topic":
            wanted = views.topic(incident, self._runbooks)
            if wanted != incident.topic:
                await self._chat.set_topic(incident.channel_id, wanted)
                await self._db.run(_save_topic, incident.id, wanted)
        elif row.kind == "checklist" and incident.checklist_ts not in (None, "pending"):
            text, blocks = views.checklist_message(incident, self._runbooks)
            await self._chat.update(incident.channel_id, str(incident.checklist_ts), text, blocks)
        return None

    async def _post(self, row: OutboxMessage) -> str:
        marker = f"{MARKER_PREFIX}{row.id}"
        if row.attempts:
            for message in await self._chat.recent_messages(row.channel, limit=50):
                if marker in message.block_ids:
                    return message.ts
        blocks = [
            {"type": "section", "block_id": marker, "text": {"type": "mrkdwn", "text": row.text}}
        ]
        return await self._chat.post(row.channel, row.text, blocks, thread_ts=row.thread_ts)


def _save_topic(session: Session, incident_id: int, topic: str) -> None:
    incident = incident_store.get(session, incident_id)
    if incident is not None:
        incident.topic = topic
