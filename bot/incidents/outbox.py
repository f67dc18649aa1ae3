"""Delivering the outbox: the messages owed after a committed change.

A change and the messages it owes commit together; `deliver` sends them in
order per destination (a Slack channel), the destinations side by side, so a
channel that refuses messages never delays another. A transient failure keeps
the row with a backoff and holds back the rows behind it in that destination;
a permanent one gives the row up, records it and reports it once (see
`undeliverable`). A row is claimed for a short time and the claim is renewed
while the send runs, however long Slack makes it wait, so a replica that dies
mid-send is taken over within seconds and a live one is never overtaken. A
`post` that may have reached Slack before is looked up by its marker block
before it is sent again, so a retry never doubles a message.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.orm import Session

from bot import logs
from bot.context import Context, Service
from bot.gateway import ChatError
from bot.incidents import privacy, undeliverable, views
from bot.messages import Card
from bot.metrics import Metrics
from bot.mrkdwn import mention
from storage import incidents as incident_store
from storage import outbox as store
from storage.db import DatabaseUnavailable
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_TTL = timedelta(seconds=10)
RENEW_SECONDS = 3.0
SETTLE_WAIT = 30.0  # seconds `settle` waits for another holder's delivery
MARKER_PREFIX = "fb-out-"


def backoff(attempts: int) -> timedelta:
    """2s, 4s, 8s … capped at 5 minutes."""
    return timedelta(seconds=min(300, 2 ** (attempts + 1)))


class ClaimLost(Exception):
    """Another holder took the row over (our renewals stopped reaching the database)."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    settled: int = 0  # delivered, given up or superseded: progress of a pass
    errors: list[str] = field(default_factory=list)  # transient: retried later
    stalled: set[str] = field(default_factory=set)  # destinations not retried in this call


class Outbox(Service):
    def __init__(
        self,
        context: Context,
        *,
        owner: str,
        external: Callable[[int | None], Awaitable[object]] | None = None,
        announce_channel: str,
        metrics: Metrics,
        claim_ttl: timedelta = CLAIM_TTL,
        renew_seconds: float = RENEW_SECONDS,
        settle_wait: float = SETTLE_WAIT,
    ) -> None:
        super().__init__(context)
        # Calls owed to other systems (PagerDuty, Statuspage: bot/paging/delivery.py)
        # go first: their outcome is itself a message for this delivery to post.
        self._external = external
        self._owner = owner
        self._announce_channel = announce_channel
        self._metrics = metrics
        self._claim_ttl = claim_ttl
        self._renew_seconds = renew_seconds
        self._settle_wait = settle_wait

    async def deliver(self, incident_id: int | None = None) -> DeliveryReport:
        """Send what is due in every destination `incident_id` has messages for (or all)."""
        if incident_id is not None:
            logs.incident_id.set(incident_id)
        if self._external is not None:
            await self._external(incident_id)
        report = DeliveryReport()
        while True:
            settled = report.settled
            chains: dict[str, list[OutboxMessage]] = {}
            for row in await self._db.run(store.due, self._clock.now(), incident_id):
                if row.destination not in report.stalled:
                    chains.setdefault(row.destination, []).append(row)
            # One chain failing (the database went) stops the others too, and they unwind
            # before this returns: a chain left running would outlive its caller and its
            # claim, and post beside whoever takes the row over.
            sending = [
                asyncio.ensure_future(self._deliver_chain(rows, report)) for rows in chains.values()
            ]
            try:
                await asyncio.gather(*sending)
            finally:
                for task in sending:
                    task.cancel()
                await asyncio.gather(*sending, return_exceptions=True)
            # Rows queued after this pass read the outbox (by a task that found a row
            # held by this one and left its own to it), or released by a row given up:
            # look again until a pass settles nothing.
            if report.settled == settled:
                return report

    async def _deliver_chain(self, rows: list[OutboxMessage], report: DeliveryReport) -> None:
        """One destination's rows, in order; stop at the first that does not go out."""
        for row in rows:
            holder = f"{self._owner}:{uuid.uuid4().hex[:8]}"
            now = self._clock.now()
            if not await self._db.run(store.claim, row.id, holder, now, self._claim_ttl):
                return  # held by another, or behind a row that is: it keeps the order
            if await self._db.run(self._dropped, row, now):
                report.settled += 1
                continue
            try:
                ts = await self._holding(row.id, holder, self._send(row))
            except ClaimLost:
                log.warning("outbox %s: claim lost to another holder", row.id)
                return
            except ChatError as exc:
                if undeliverable.is_permanent(exc.code):
                    await self._give_up(row, exc.code)
                    report.settled += 1
                    continue
                report.errors.append(exc.code)
                report.stalled.add(row.destination)
                log.warning("outbox %s (%s) failed: %s", row.id, row.kind, exc.code)
                retry_at = self._clock.now() + backoff(row.attempts)
                await self._db.run(store.retry_later, row.id, exc.code, retry_at)
                return
            await self._db.run(store.delivered, row.id, ts, self._clock.now())
            report.delivered += 1
            report.settled += 1

    async def _holding(self, row_id: int, holder: str, send: Awaitable[T]) -> T:
        """Await `send`, renewing the claim meanwhile; cancel it if the claim is lost.

        The claim is short so a dead holder is taken over quickly; the renewals keep it
        alive however long the call takes (a 429's Retry-After, client retries).
        """
        task = asyncio.ensure_future(send)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._renew_seconds)
                if done:
                    return task.result()
                try:
                    kept = await self._db.run(
                        store.renew, row_id, holder, self._clock.now(), self._claim_ttl
                    )
                except DatabaseUnavailable:
                    log.warning("could not renew the claim on outbox %s", row_id)
                    continue
                if not kept:
                    raise ClaimLost
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _dropped(self, session: Session, row: OutboxMessage, now: datetime) -> bool:
        """Give up a row that must not go out: superseded by a newer one, or carrying a
        private incident's news outside its channel (`privacy.withheld`: the backstop
        for a path that forgot to ask `privacy.broadcasts`, so it is logged as an error)."""
        if store.superseded(session, row):
            store.give_up(session, row.id, store.SUPERSEDED, now)
            return True
        incident = incident_store.get(session, row.incident_id)
        if incident is None or not privacy.withheld(incident, row.channel, row.kind):
            return False
        log.error(
            "outbox %s: withheld a private incident's %s from %s", row.id, row.kind, row.channel
        )
        store.give_up(session, row.id, privacy.WITHHELD, now)
        incident_store.append_event(
            session,
            incident,
            "broadcast_withheld",
            "firebreak",
            now,
            channel=row.channel,
            kind=row.kind,
        )
        return True

    async def _give_up(self, row: OutboxMessage, code: str) -> None:
        log.warning("outbox %s (%s to %s) undeliverable: %s", row.id, row.kind, row.channel, code)
        self._metrics.undeliverable.labels(code).inc()
        await self._db.run(self._record_failure, row, code)

    def _record_failure(self, session: Session, row: OutboxMessage, code: str) -> None:
        now = self._clock.now()
        store.give_up(session, row.id, code, now)
        incident = incident_store.get(session, row.incident_id)
        if incident is None:
            return
        undeliverable.record(
            session,
            incident,
            channel=row.channel,
            code=code,
            what=_what(row),
            now=now,
            announce_channel=self._announce_channel,
            report=row.kind != "notice",
        )

    async def settle(self, incident_id: int, row_ids: list[int]) -> str:
        """What the requester should hear about `row_ids` after delivery: "" when all
        are in Slack, else what is true of them (failed for good, being sent by
        another process, or waiting for a retry).

        A row another holder is sending is waited for (it sends the ones queued behind
        it too); one whose holder died (its claim lapsed) is taken over here.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_wait
        rounds = 0
        pause = 0.05
        while True:
            rows = await self._db.run(store.states, row_ids, self._clock.now())
            statuses = {row.status for row in rows}
            if "sending" in statuses and loop.time() < deadline:
                # Polled, so slowing down: many waiting requesters must not crowd out the
                # database threads the senders themselves need.
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)
                continue
            if "ready" in statuses and rounds < 3:
                rounds += 1
                await self.deliver(incident_id)
                continue
            return self._answer(rows)

    def _answer(self, rows: list[store.RowState]) -> str:
        lines = []
        failed = dict.fromkeys(
            (r.channel, r.error or "unknown_error") for r in rows if r.status == "failed"
        )
        for channel, code in failed:
            remedy = undeliverable.remedy(channel, code, self._announce_channel)
            lines.append(
                f":warning: Saved, but Firebreak could not post it in "
                f"{undeliverable.where(channel)}: {undeliverable.explain(code)} (`{code}`). "
                f"It will not be retried.{' ' + remedy if remedy else ''}"
            )
        if any(r.status == "sending" for r in rows):
            lines.append(
                ":hourglass: Saved; another Firebreak process is sending its messages to Slack "
                "right now. No need to repeat it."
            )
        waiting = sorted({r.error or "queued" for r in rows if r.status in ("waiting", "ready")})
        if waiting:
            lines.append(
                f":warning: Saved, but Slack did not take the message yet "
                f"(`{', '.join(waiting)}`). Firebreak will retry it."
            )
        return "\n".join(lines)

    async def _send(self, row: OutboxMessage) -> str | None:
        if row.kind in ("post", "notice", "card", privacy.NOTICE_KIND):
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
            checklist = views.checklist_message(incident, self._runbooks)
            await self._chat.update(incident.channel_id, str(incident.checklist_ts), checklist)
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
        return await self._chat.post(
            row.channel, _card(row).marked(marker), thread_ts=row.thread_ts
        )


def _card(row: OutboxMessage) -> Card:
    """A `post` is one paragraph of mrkdwn; a `card` row holds its card as JSON (a
    preview with buttons, a digest)."""
    return Card.from_json(row.text) if row.kind == "card" else Card.text(row.text)


def _what(row: OutboxMessage) -> str:
    """The failed row's job, in words ("could not …")."""
    if row.kind == "invite":
        return f"invite {mention(row.text)}"
    if row.kind == "topic":
        return "set the topic"
    if row.kind == "checklist":
        return "update the checklist"
    return "post a message"


def _save_topic(session: Session, incident_id: int, topic: str) -> None:
    incident = incident_store.get(session, incident_id)
    if incident is not None:
        incident.topic = topic
