"""From alert to incident: record a delivery, then route and apply it after the answer.

A delivery is recorded in the request (`receive`), so the sender gets its answer
at once and a crash after it loses nothing; `process` then applies the key's
unprocessed deliveries in the order they came, one key at a time, each in one
transaction (`bot.alerts.episodes`: open an episode, or add to the live one).

Everything Slack is owed afterwards (the declare saga, the offer, the alert's
details, an automatic resolve) is recorded first and finished by `_finish`,
which the periodic sweep repeats for whatever a crash or a Slack error left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from bot import commands as c
from bot.alerts import views
from bot.alerts.episodes import SYSTEM, Episodes
from bot.alerts.payloads import Delivery
from bot.context import Context, Service
from bot.errors import UserError
from bot.gateway import ChatError
from bot.incidents import undeliverable
from bot.incidents.declare import DeclareFlow
from bot.incidents.outbox import Outbox
from bot.incidents.service import IncidentService, Request
from bot.mrkdwn import channel_link
from storage import alerts as store
from storage import incidents as incident_store
from storage.models import PENDING
from storage.outbox import enqueue

log = logging.getLogger(__name__)

# A delivery still unprocessed this long after it came has lost its worker (a crash).
STALE_AFTER = timedelta(seconds=30)
# offer_ts of an offer Slack refused for good (no such channel, say): not tried again.
UNDELIVERABLE = "undeliverable"


@dataclass(frozen=True)
class Receipt:
    delivery_id: int
    key_hash: str
    duplicate: bool  # the same as the last delivery of its key: nothing to do


class AlertService(Service):
    def __init__(
        self,
        context: Context,
        *,
        outbox: Outbox,
        declare_flow: DeclareFlow,
        incidents: IncidentService,
        announce_channel: str,
    ) -> None:
        super().__init__(context)
        self._outbox = outbox
        self._declare_flow = declare_flow
        self._incidents = incidents
        self._announce_channel = announce_channel
        self._episodes = Episodes(
            runbooks=context.runbooks, clock=context.clock, incidents=incidents
        )
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # In the request ----------------------------------------------------------

    async def receive(self, delivery: Delivery) -> Receipt:
        """Record the delivery (or recognise a repeat of the last one); no routing yet."""
        delivery_id, duplicate = await self._db.run(
            store.record_delivery,
            source=delivery.source,
            key_hash=delivery.key_hash,
            digest=delivery.digest,
            payload=delivery.to_json(),
            at=self._clock.now(),
        )
        return Receipt(delivery_id, delivery.key_hash, duplicate)

    # After the answer --------------------------------------------------------

    async def process(self, key_hash: str) -> None:
        """Apply every unprocessed delivery of one key, oldest first."""
        async with self._key_lock(key_hash):
            for delivery_id in await self._db.run(store.unprocessed_for_key, key_hash):
                applied = await self._db.run(self._episodes.apply, delivery_id)
                if applied is not None:
                    await self._finish(applied.group_id, refresh_offer=applied.refresh_offer)

    async def resume(self) -> None:
        """The sweep: deliveries a crash left unprocessed, and what groups still owe Slack.

        A key this process is working on is skipped: that work finishes it, and the
        sweep does not queue up behind a burst of alerts.
        """
        stale = self._clock.now() - STALE_AFTER
        for key_hash in await self._db.run(store.unprocessed_keys, stale):
            if key_hash not in self._locks:
                await self.process(key_hash)
        for group_id in await self._db.run(store.unfinished_groups):
            group = await self._db.run(store.group, group_id)
            if group is not None and group.key_hash not in self._locks:
                async with self._key_lock(group.key_hash):
                    await self._finish(group_id)

    async def decide_offer(self, group_id: int, declare: bool, request: Request) -> str:
        """Declare incident / Dismiss on an offer: the first click decides, once."""
        group = await self._db.run(store.group, group_id)
        if group is None:
            raise UserError("That alert is no longer known to Firebreak.")
        async with self._key_lock(group.key_hash):
            reply = await self._db.run(self._episodes.decide, group_id, declare, request)
            await self._finish(group_id, refresh_offer=True)
        if reply or not declare:
            return reply
        group = await self._db.run(store.group, group_id)
        incident = None
        if group is not None and group.incident_id is not None:
            incident = await self._db.run(incident_store.get, group.incident_id)
        if incident is None or not incident.channel_id:
            return "The incident is recorded; Firebreak is still setting it up."
        link = channel_link(incident.channel_id, incident.channel_name)
        return f"Declared *{incident.severity}* incident {link} from the alert."

    # What Slack is owed --------------------------------------------------------

    async def _finish(self, group_id: int, *, refresh_offer: bool = False) -> None:
        """Post the offer, run the declare saga, post the alert's details, auto-resolve.

        Each step is recorded when done, so the sweep repeats only what is missing.
        The caller holds the group's key lock.
        """
        group = await self._db.run(store.group, group_id)
        if group is None:
            return
        try:
            if group.incident_id is not None:
                await self._declare_flow.resume(group.incident_id)
                if not group.source_posted:
                    await self._db.run(self._queue_source, group_id)
                await self._outbox.deliver(group.incident_id)
            if group.action == "offer":
                await self._offer(group_id, refresh=refresh_offer)
            if group.resolve_due:
                await self._auto_resolve(group_id)
        except ChatError as exc:
            log.warning("alert group %s: Slack refused it (%s); retried", group_id, exc)

    def _queue_source(self, session: Session, group_id: int) -> None:
        group = store.group(session, group_id, for_update=True)
        if group is None or group.source_posted or group.incident_id is None:
            return
        incident = incident_store.get(session, group.incident_id)
        if incident is None or not incident.channel_id:
            return  # the saga has not made the channel yet; the sweep comes back
        text = views.render(self._runbooks.templates, "alert_source.j2", group)
        enqueue(
            session, incident.id, "post", self._clock.now(), channel=incident.channel_id, text=text
        )
        group.source_posted = True

    async def _offer(self, group_id: int, *, refresh: bool) -> None:
        """Post the offer once (a post whose ts was lost is found by its marker), or
        redraw it after a decision."""
        group = await self._db.run(store.group, group_id)
        assert group is not None
        incident = None
        if group.incident_id is not None:
            incident = await self._db.run(incident_store.get, group.incident_id)
        offer = views.offer_message(self._runbooks.templates, group, incident)
        channel = self._announce_channel
        if group.offer_ts == UNDELIVERABLE:
            return
        if group.offer_ts not in (None, PENDING):
            if refresh:
                await self._chat.update(channel, str(group.offer_ts), offer)
            return
        try:
            if group.offer_ts == PENDING:
                marker = f"{views.OFFER_MARKER}{group.id}"
                for message in await self._chat.recent_messages(channel, limit=100):
                    if marker in message.block_ids:
                        await self._db.run(_save_offer, group_id, message.ts)
                        if refresh:
                            await self._chat.update(channel, message.ts, offer)
                        return
            await self._db.run(_save_offer, group_id, PENDING)
            ts = await self._chat.post(channel, offer)
        except ChatError as exc:
            if not undeliverable.is_permanent(exc.code):
                raise
            # No incident yet, so no channel to say it in: the log, once, not every sweep.
            await self._db.run(_save_offer, group_id, UNDELIVERABLE)
            log.error(
                "alert group %s: the offer could not be posted to #%s: %s. %s",
                group_id,
                channel,
                undeliverable.explain(exc.code),
                undeliverable.remedy(channel, exc.code, channel),
            )
            return
        await self._db.run(_save_offer, group_id, ts)

    async def _auto_resolve(self, group_id: int) -> None:
        group = await self._db.run(store.group, group_id)
        assert group is not None and group.incident_id is not None
        incident = await self._db.run(incident_store.get, group.incident_id)
        if incident is None or not incident.channel_id:
            return  # no channel yet: the sweep comes back once the saga has made it
        summary = f"Every alert of “{group.title}” resolved (rule {group.rule}: auto_resolve)."
        request = Request(SYSTEM, incident.channel_id, f"alert-resolve:{group.id}")
        await self._incidents.resolve(c.Resolve(summary=summary), request)
        await self._db.run(_resolve_done, group_id)

    @asynccontextmanager
    async def _key_lock(self, key_hash: str) -> AsyncIterator[None]:
        """One task at a time per key in this process (the database guards across
        replicas: the unique live episode, and row locks on Postgres)."""
        lock, users = self._locks.get(key_hash, (asyncio.Lock(), 0))
        self._locks[key_hash] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key_hash]
            if users == 1:
                del self._locks[key_hash]
            else:
                self._locks[key_hash] = (lock, users - 1)


def _save_offer(session: Session, group_id: int, ts: str) -> None:
    group = store.group(session, group_id)
    if group is not None:
        group.offer_ts = ts


def _resolve_done(session: Session, group_id: int) -> None:
    group = store.group(session, group_id)
    if group is not None:
        group.resolve_due = False
