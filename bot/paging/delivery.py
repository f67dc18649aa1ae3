"""Delivering the calls owed to PagerDuty and Statuspage, durably and at most once.

A change that owes a call (a page, a resolve, a public update) writes an outbox row
for the destination `pagerduty` or `statuspage` in its own transaction, so a crash
loses nothing. Rows are sent oldest first, one destination and incident in order:
a resolve never overtakes its page. A transient failure (timeout, 429, 5xx) keeps
the row with a backoff and, the first time, says so in the channel; a permanent one
(bad token, unknown service) ends it and says that instead. Each success appends
its event and the channel message in one transaction.

Never twice: a page carries the incident's `incident_key`, which PagerDuty refuses
to open twice on a service, and the gateway adopts the open incident instead; a
public update is looked up before it is sent again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.incidents import privacy
from bot.incidents.outbox import backoff
from bot.paging.gateways import ExternalError, PagerGateway, PublicUpdate, StatusPageGateway
from bot.runbooks import Runbooks
from storage import incidents as incident_store
from storage import outbox as outbox_store
from storage import paging as store
from storage.db import Database
from storage.models import Incident, OutboxMessage

log = logging.getLogger(__name__)

# Longer than a call's own timeout, so a live sender is never overtaken; short enough
# that a row claimed by a killed process is retried within seconds of a restart.
CLAIM_TTL = timedelta(seconds=20)
SYSTEM_NAMES = {"pagerduty": "PagerDuty", "statuspage": "Statuspage"}

PAGE, RESOLVE, PUBLISH = "pd.page", "pd.resolve", "sp.publish"


def marker(incident_id: int) -> str:
    """The key that names our incident elsewhere: PagerDuty's `incident_key`, and
    Statuspage's metadata. One per incident, so a retry finds what it already made."""
    return f"firebreak-{incident_id}"


def enqueue_call(
    session: Session, incident: Incident, kind: str, now: datetime, **payload: Any
) -> OutboxMessage:
    system = "statuspage" if kind == PUBLISH else "pagerduty"
    return outbox_store.enqueue(
        session,
        incident.id,
        kind,
        now,
        channel=system,
        text=json.dumps(payload),
        destination=f"{system}:{incident.id}",  # in order per system and incident
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one call: delivered, queued for retry (`error`), or refused."""

    row_id: int
    error: str | None = None
    permanent: bool = False


class ExternalDelivery:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        runbooks: Runbooks,
        pager: PagerGateway | None,
        status_page: StatusPageGateway | None,
        owner: str,
        announce_channel: str,
    ) -> None:
        self._db = db
        self._clock = clock
        self._runbooks = runbooks
        self._pager = pager
        self._status_page = status_page
        self._owner = owner
        self._announce_channel = announce_channel

    async def deliver(self, incident_id: int | None = None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        if self._pager is None and self._status_page is None:
            return outcomes  # neither configured: calls queued earlier wait for the settings
        blocked: set[tuple[int, str]] = set()  # (incident, destination) with a row held back
        for row in await self._db.run(store.due, self._clock.now(), incident_id):
            lane = (row.incident_id, row.channel)
            if lane in blocked:
                continue
            if not await self._db.run(
                outbox_store.claim, row.id, self._owner, self._clock.now(), CLAIM_TTL
            ):
                blocked.add(lane)
                continue
            outcome = await self._deliver(row)
            if outcome.error and not outcome.permanent:
                blocked.add(lane)
            outcomes.append(outcome)
        return outcomes

    async def _deliver(self, row: OutboxMessage) -> Outcome:
        payload = json.loads(row.text)
        try:
            result = await self._send(row, payload)
        except ExternalError as exc:
            log.warning("%s call %s (%s) failed: %s", row.channel, row.id, row.kind, exc.code)
            await self._db.run(self._record_failure, row, payload, exc)
            return Outcome(row.id, exc.code, exc.permanent)
        await self._db.run(self._record_success, row, payload, result)
        return Outcome(row.id)

    async def _send(self, row: OutboxMessage, payload: dict[str, Any]) -> dict[str, Any]:
        key = marker(row.incident_id)
        if row.kind in (PAGE, RESOLVE):
            if self._pager is None:
                raise ExternalError("PagerDuty", "not_configured", permanent=True)
            if row.kind == RESOLVE:
                ids = await self._pager.resolve(service_id=payload["service_id"], incident_key=key)
                return {"pagerduty_incidents": ids}
            paged = await self._pager.page(
                service_id=payload["service_id"],
                escalation_policy_id=payload["escalation_policy_id"],
                incident_key=key,
                title=payload["title"],
                details=payload["details"],
            )
            return {
                "pagerduty_incident": paged.id,
                "url": paged.html_url,
                "assignees": list(paged.assignees),
                "already_open": paged.already_open,
            }
        if self._status_page is None:
            raise ExternalError("Statuspage", "not_configured", permanent=True)
        update = PublicUpdate(payload["status"], payload["body"])
        public_id = await self._status_page.find_incident(key)
        if public_id is None:
            public_id = await self._status_page.create_incident(
                marker=key, name=payload["name"], update=update, components=payload["components"]
            )
        elif not await self._status_page.has_update(public_id, update):
            await self._status_page.add_update(public_id, update, payload["components"])
        return {"public_incident": public_id}

    # Recording, one transaction each ---------------------------------------------

    def _record_success(
        self, session: Session, row: OutboxMessage, payload: dict[str, Any], result: dict[str, Any]
    ) -> None:
        now = self._clock.now()
        outbox_store.delivered(session, row.id, None, now)
        incident = incident_store.get(session, row.incident_id)
        if incident is None:
            return
        event_type = {PAGE: "paging.paged", RESOLVE: "paging.resolve_sent"}.get(
            row.kind, "statuspage.published"
        )
        details = {k: v for k, v in payload.items() if k != "actor"}
        actor = str(payload.get("actor") or "firebreak")
        incident_store.append_event(
            session, incident, event_type, actor, now, **details, **result, call=row.id
        )
        if row.kind == PAGE:
            # "Already paged" only if a page for this service was recorded before: a retry
            # that adopts the incident its own first try opened is simply the page.
            pages = [
                e
                for e in store.events(session, incident.id, "paging.paged")
                if e.payload.get("service") == payload.get("service")
            ]
            call = {**payload, **result, "already_open": len(pages) > 1}  # this one included
            self._post(session, incident, now, "paged.j2", call=call)
        elif row.kind == PUBLISH:
            self._post(session, incident, now, "statuspage_published.j2", call=payload)

    def _record_failure(
        self, session: Session, row: OutboxMessage, payload: dict[str, Any], exc: ExternalError
    ) -> None:
        now = self._clock.now()
        if exc.permanent:
            outbox_store.give_up(session, row.id, exc.code, now)
        else:
            outbox_store.retry_later(session, row.id, exc.code, now + backoff(row.attempts))
        incident = incident_store.get(session, row.incident_id)
        if incident is None or (row.attempts and not exc.permanent):
            return  # told once, when it first failed
        system = SYSTEM_NAMES[row.channel]
        incident_store.append_event(
            session,
            incident,
            f"{row.channel}.call_failed",
            "firebreak",
            now,
            call=row.id,
            kind=row.kind,
            error=exc.code,
            permanent=exc.permanent,
            service=payload.get("service"),
        )
        self._post(
            session,
            incident,
            now,
            "external_failed.j2",
            system=system,
            kind=row.kind,
            error=exc.code,
            permanent=exc.permanent,
            service=payload.get("service"),
        )

    def _post(
        self, session: Session, incident: Incident, now: datetime, template: str, **context: Any
    ) -> None:
        """A message in the incident channel (the broadcast channel while it has none,
        unless the incident is private: then the event log alone keeps it)."""
        if not incident.channel_id and not privacy.broadcasts(incident):
            return None
        text = self._runbooks.templates.render(template, incident=incident, **context)
        channel = incident.channel_id or self._announce_channel
        outbox_store.enqueue(session, incident.id, "post", now, channel=channel, text=text)
