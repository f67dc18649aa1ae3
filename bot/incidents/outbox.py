"""Delivering the outbox: the messages and calls owed after a committed change.

A change and what it owes commit together; `deliver` sends the rows in order per
destination (a Slack channel, or one incident's calls to PagerDuty or Statuspage), the
destinations side by side, so a destination that refuses never delays another. Each
system's `Sender` makes the calls and judges its own failures; the rest is common. A
transient failure keeps the row with a backoff and holds back the rows behind it in
that destination; a permanent one gives the row up and the sender records it (Slack's
are reported once, see `undeliverable`). A row is claimed for a short time and the
claim is renewed while the send runs, however long the other side makes it wait, so a
replica that dies mid-send is taken over within seconds and a live one is never
overtaken. A Slack `post` that may have reached Slack before is looked up by its marker
block before it is sent again, so a retry never doubles a message. A call's outcome is
itself a message, queued as the call settles, so it is posted after the call.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from bot import logs
from bot.context import Context, Service
from bot.gateway import ChatError
from bot.incidents import privacy, undeliverable, views
from bot.messages import Card
from bot.metrics import Metrics
from bot.mrkdwn import mention
from storage import incidents as incident_store
from storage import legacy_blocks
from storage import outbox as store
from storage.db import DatabaseUnavailable
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_TTL = timedelta(seconds=10)
RENEW_SECONDS = 3.0
QUICK_ROUNDS = 3  # deliveries `settle` tries at once before pausing between them
SETTLE_WAIT = 30.0  # seconds `settle` waits for another holder's delivery
MARKER_PREFIX = "fb-out-"
LEGACY_BLOCKS = "post_blocks"  # a card as Block Kit, queued by a release before 0011
POSTS = ("post", "notice", "card", LEGACY_BLOCKS, privacy.NOTICE_KIND)
REFRESHES = ("invite", "topic", "checklist")  # redrawn from the incident's state
UNKNOWN_KIND = "unknown_kind"
# How far back the sweep looks for cards an older replica dropped: longer than a
# rolling update takes.
ROLLING_UPDATE_WINDOW = timedelta(minutes=15)


def backoff(attempts: int) -> timedelta:
    """2s, 4s, 8s … capped at 5 minutes."""
    return timedelta(seconds=min(300, 2 ** (attempts + 1)))


class ClaimLost(Exception):
    """Another holder took the row over (our renewals stopped reaching the database)."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    settled: int = 0  # delivered, given up or superseded: progress of a pass
    stalled: set[str] = field(default_factory=set)  # destinations retried later, not in this call

    def slack_waits(self) -> bool:
        """Whether a Slack message failed for now (it is retried later)."""
        return any(store.system_of(destination) == store.SLACK for destination in self.stalled)


@dataclass(frozen=True)
class Sent:
    """What a send left: the Slack message's ts, or what the other system answered."""

    ts: str | None = None
    answer: dict[str, Any] = field(default_factory=dict)


class SendFailed(Exception):
    """A row that did not go out, as its sender judges it: `permanent` gives it up,
    otherwise it is retried after a backoff."""

    def __init__(self, code: str, *, permanent: bool) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


class Sender(Protocol):
    """Sends the rows of one system's destinations; `Outbox` claims, orders and retries them."""

    async def send(self, row: OutboxMessage) -> Sent:
        """Send the row; raise `SendFailed` when it does not go out."""
        ...

    def withheld(self, session: Session, row: OutboxMessage, now: datetime) -> bool:
        """Whether the row must not go out at all (it is given up unsent)."""
        ...

    def delivered(self, session: Session, row: OutboxMessage, sent: Sent, now: datetime) -> None:
        """Record what a delivery leaves besides the row's state, in the same transaction."""
        ...

    def failed(
        self, session: Session, row: OutboxMessage, failure: SendFailed, now: datetime
    ) -> None:
        """Record what a failure leaves besides the row's state, in the same transaction."""
        ...


class Outbox(Service):
    def __init__(
        self,
        context: Context,
        *,
        owner: str,
        announce_channel: str,
        metrics: Metrics,
        external: Mapping[str, Sender] | None = None,
        claim_ttl: timedelta = CLAIM_TTL,
        renew_seconds: float = RENEW_SECONDS,
        settle_wait: float = SETTLE_WAIT,
    ) -> None:
        super().__init__(context)
        # By the system a destination names: Slack's, and those of the calls owed to
        # other systems (PagerDuty, Statuspage: bot/paging/delivery.py).
        self._senders: dict[str, Sender] = {
            store.SLACK: SlackSender(context, announce_channel=announce_channel, metrics=metrics),
            **(external or {}),
        }
        self._owner = owner
        self._announce_channel = announce_channel
        self._claim_ttl = claim_ttl
        self._renew_seconds = renew_seconds
        self._settle_wait = settle_wait

    async def deliver(self, incident_id: int | None = None) -> DeliveryReport:
        """Send what is due in every destination `incident_id` has rows in (or all)."""
        if incident_id is not None:
            logs.incident_id.set(incident_id)
        report = DeliveryReport()
        systems = list(self._senders)
        if incident_id is None:  # the sweep
            now = self._clock.now()
            await self._db.run(store.resend_dropped_cards, now, ROLLING_UPDATE_WINDOW)
        while True:
            progress = (report.settled, len(report.stalled))
            chains: dict[str, list[OutboxMessage]] = {}
            for row in await self._db.run(store.due, self._clock.now(), incident_id, systems):
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
            # held by this one and left its own to it, or by a call reporting how it
            # went, failures too), or released by a row given up: look again until a
            # pass settles nothing and stalls no destination (stalled ones are skipped).
            if (report.settled, len(report.stalled)) == progress:
                return report

    async def _deliver_chain(self, rows: list[OutboxMessage], report: DeliveryReport) -> None:
        """One destination's rows, in order; stop at the first that does not go out."""
        sender = self._senders[store.system_of(rows[0].destination)]
        for row in rows:
            holder = f"{self._owner}:{uuid.uuid4().hex[:8]}"
            now = self._clock.now()
            if not await self._db.run(store.claim, row.id, holder, now, self._claim_ttl):
                return  # held by another, or behind a row that is: it keeps the order
            if await self._db.run(_dropped, sender, row, now):
                report.settled += 1
                continue
            try:
                sent = await self._holding(row.id, holder, sender.send(row))
            except ClaimLost:
                log.warning("outbox %s: claim lost to another holder", row.id)
                return
            except SendFailed as failure:
                log.warning(
                    "outbox %s (%s to %s) %s: %s",
                    row.id,
                    row.kind,
                    row.channel,
                    "undeliverable" if failure.permanent else "failed",
                    failure.code,
                )
                await self._db.run(self._record_failure, sender, row, failure)
                if failure.permanent:
                    report.settled += 1
                    continue
                report.stalled.add(row.destination)
                return
            await self._db.run(self._record_delivery, sender, row, sent)
            report.delivered += 1
            report.settled += 1

    def _record_delivery(
        self, session: Session, sender: Sender, row: OutboxMessage, sent: Sent
    ) -> None:
        now = self._clock.now()
        store.delivered(session, row.id, sent.ts, now)
        sender.delivered(session, row, sent, now)

    def _record_failure(
        self, session: Session, sender: Sender, row: OutboxMessage, failure: SendFailed
    ) -> None:
        now = self._clock.now()
        if failure.permanent:
            store.give_up(session, row.id, failure.code, now)
        else:
            store.retry_later(session, row.id, failure.code, now + backoff(row.attempts))
        sender.failed(session, row, failure, now)

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
            if "ready" in statuses and loop.time() < deadline:
                # Behind rows another delivery had just claimed or released when this one
                # looked: try again, after a pause once the quick tries are spent, rather
                # than tell the requester a message is late when it is only queued.
                if rounds >= QUICK_ROUNDS:
                    await asyncio.sleep(pause)
                    pause = min(1.0, pause * 2)
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


def _dropped(session: Session, sender: Sender, row: OutboxMessage, now: datetime) -> bool:
    """Give up a row that must not go out: superseded by a newer one, or withheld by
    its sender."""
    if store.superseded(session, row):
        store.give_up(session, row.id, store.SUPERSEDED, now)
        return True
    if sender.withheld(session, row, now):
        store.give_up(session, row.id, store.WITHHELD, now)
        return True
    return False


class SlackSender(Service):
    """Sends the rows of Slack destinations: posts, invites, topics and checklists."""

    def __init__(self, context: Context, *, announce_channel: str, metrics: Metrics) -> None:
        super().__init__(context)
        self._announce_channel = announce_channel
        self._metrics = metrics

    async def send(self, row: OutboxMessage) -> Sent:
        try:
            return Sent(ts=await self._send(row))
        except ChatError as exc:
            raise SendFailed(exc.code, permanent=undeliverable.is_permanent(exc.code)) from exc

    def withheld(self, session: Session, row: OutboxMessage, now: datetime) -> bool:
        """A private incident's news outside its channel (`privacy.withheld`: the backstop
        for a path that forgot to ask `privacy.broadcasts`, so it is logged as an error)."""
        incident = incident_store.get(session, row.incident_id)
        if incident is None or not privacy.withheld(incident, row.channel, row.kind):
            return False
        log.error(
            "outbox %s: withheld a private incident's %s from %s", row.id, row.kind, row.channel
        )
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

    def delivered(self, session: Session, row: OutboxMessage, sent: Sent, now: datetime) -> None:
        """Nothing besides the row's state: it keeps the message's ts."""

    def failed(
        self, session: Session, row: OutboxMessage, failure: SendFailed, now: datetime
    ) -> None:
        if not failure.permanent:
            return  # retried; a requester hears it from `settle`
        self._metrics.undeliverable.labels(failure.code).inc()
        incident = incident_store.get(session, row.incident_id)
        if incident is None:
            return
        undeliverable.record(
            session,
            incident,
            channel=row.channel,
            code=failure.code,
            what=_what(row),
            now=now,
            announce_channel=self._announce_channel,
            report=row.kind != "notice",
        )

    async def _send(self, row: OutboxMessage) -> str | None:
        if row.kind in POSTS:
            return await self._post(row)
        if row.kind not in REFRESHES:
            # A newer release's kind (during a rolling update): leave it to a replica
            # that knows it, instead of marking it done unsent.
            raise SendFailed(UNKNOWN_KIND, permanent=False)
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
    preview with buttons, a digest), and a `post_blocks` row, queued by a replica of a
    release before migration 0011, the Block Kit that card would be."""
    if row.kind == "card":
        return Card.from_json(row.text)
    if row.kind == LEGACY_BLOCKS:
        return Card.from_json(legacy_blocks.card_from_blocks(row.text))
    return Card.text(row.text)


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
