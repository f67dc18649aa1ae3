"""Delivering the outbox: the Slack messages owed after a committed change.

A change and the messages it owes commit together; `deliver` sends them in
order, per incident, and on failure keeps the row with a backoff so the
sweeper retries it. A `post` that failed after Slack may have accepted it is
looked up by its marker block before it is sent again, so a retry never
doubles a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.gateway import ChatError, ChatGateway
from bot.incidents import views
from bot.mrkdwn import fallback_text
from bot.runbooks import Runbooks
from storage import incidents as incident_store
from storage import outbox as store
from storage.db import Database
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(seconds=60)
SETTLE_WAIT = 30.0  # seconds `undelivered` waits for another task's delivery
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
        self,
        *,
        db: Database,
        chat: ChatGateway,
        runbooks: Runbooks,
        clock: Clock,
        owner: str,
        external: Callable[[int | None], Awaitable[object]] | None = None,
    ) -> None:
        self._db = db
        # Calls owed to other systems (PagerDuty, Statuspage: bot/paging/delivery.py)
        # go first: their outcome is itself a message for this delivery to post.
        self._external = external
        self._chat = chat
        self._runbooks = runbooks
        self._clock = clock
        self._owner = owner

    async def deliver(self, incident_id: int | None = None) -> DeliveryReport:
        if self._external is not None:
            await self._external(incident_id)
        report = DeliveryReport()
        # Incidents with a failed row, or a row another task is sending: keep their order.
        blocked: set[int] = set()
        while True:
            delivered = report.delivered
            rows = await self._db.run(store.due, self._clock.now(), incident_id)
            await self._deliver_rows(
                [r for r in rows if r.incident_id not in blocked], blocked, report
            )
            # A task that found a row claimed by this one left its own rows (queued after
            # this call read the outbox) to it: look again until a pass sends nothing.
            if report.delivered == delivered:
                return report

    async def _deliver_rows(
        self, rows: list[OutboxMessage], blocked: set[int], report: DeliveryReport
    ) -> None:
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

    async def undelivered(self, incident_id: int, row_ids: list[int]) -> list[str]:
        """Why each of `row_ids` is not in Slack yet (its last error); [] when all are.

        A concurrent `deliver` may be sending them (it found them queued behind a row it
        holds): wait while any row of the incident is being sent, so the requester is
        told what became of their messages, not what happened to be true mid-way.
        """
        if not row_ids:
            return []
        waited = 0.0
        while True:
            pending, sending = await self._db.run(
                _delivery_state, incident_id, row_ids, self._clock.now()
            )
            if not pending or not sending or waited >= SETTLE_WAIT:
                return [error or "queued" for error in pending]
            await asyncio.sleep(0.1)
            waited += 0.1

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
        # Tried before: it failed (attempts), or its sender stopped before recording any
        # outcome (a claim left to expire: killed, or the database went). Slack may have
        # taken it either way, so look first.
        if row.attempts or row.claimed_until is not None:
            for message in await self._chat.recent_messages(row.channel, limit=50):
                if marker in message.block_ids:
                    return message.ts
        blocks = [
            {"type": "section", "block_id": marker, "text": {"type": "mrkdwn", "text": row.text}}
        ]
        return await self._chat.post(
            row.channel, fallback_text(blocks), blocks, thread_ts=row.thread_ts
        )


def _save_topic(session: Session, incident_id: int, topic: str) -> None:
    incident = incident_store.get(session, incident_id)
    if incident is not None:
        incident.topic = topic


def _delivery_state(
    session: Session, incident_id: int, row_ids: list[int], now: datetime
) -> tuple[list[str | None], bool]:
    """The last errors of the undelivered `row_ids`, and whether any row of the
    incident is being sent right now (claimed, claim not expired)."""
    pending = session.execute(
        select(OutboxMessage.last_error).where(
            OutboxMessage.id.in_(row_ids), OutboxMessage.delivered_at.is_(None)
        )
    )
    sending = session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.incident_id == incident_id,
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.claimed_until > now,
        )
        .limit(1)
    )
    return [error for (error,) in pending], sending is not None
