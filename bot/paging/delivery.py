"""Sending the calls owed to PagerDuty and Statuspage, durably and at most once.

A change that owes a call (a page, a resolve, a public update) writes an outbox row
for the destination `pagerduty:<incident>` or `statuspage:<incident>` in its own
transaction, so a crash loses nothing; the outbox (bot/incidents/outbox.py) delivers
it like a Slack message, in order per system and incident (a resolve never overtakes
its page), through `CallSender`. A transient failure (timeout, 429, 5xx) is retried
and, the first time, said in the channel; a permanent one (bad token, unknown service)
ends the call and says that instead. Each success appends its event and the channel
message in the transaction that settles the call, so the message follows the call.

Never twice: a page carries the incident's `incident_key`, which PagerDuty refuses
to open twice on a service, and the gateway adopts the open incident instead; a
public update is looked up before it is sent again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.incidents import privacy
from bot.incidents.outbox import Sender, SendFailed, Sent
from bot.paging.gateways import ExternalError, PagerGateway, PublicUpdate, StatusPageGateway
from bot.runbooks import Runbooks
from storage import incidents as incident_store
from storage import outbox as outbox_store
from storage import paging as store
from storage.models import Incident, OutboxMessage

log = logging.getLogger(__name__)

PAGERDUTY, STATUSPAGE = "pagerduty", "statuspage"  # the systems their destinations name
SYSTEM_NAMES = {PAGERDUTY: "PagerDuty", STATUSPAGE: "Statuspage"}

PAGE, RESOLVE, PUBLISH = "pd.page", "pd.resolve", "sp.publish"


def marker(incident_id: int) -> str:
    """The key that names our incident elsewhere: PagerDuty's `incident_key`, and
    Statuspage's metadata. One per incident, so a retry finds what it already made."""
    return f"firebreak-{incident_id}"


def enqueue_call(
    session: Session, incident: Incident, kind: str, now: datetime, **payload: Any
) -> OutboxMessage:
    system = STATUSPAGE if kind == PUBLISH else PAGERDUTY
    return outbox_store.enqueue(
        session,
        incident.id,
        kind,
        now,
        channel=system,
        text=json.dumps(payload),
        destination=f"{system}:{incident.id}",  # in order per system and incident
    )


def call_senders(
    *,
    runbooks: Runbooks,
    pager: PagerGateway | None,
    status_page: StatusPageGateway | None,
    announce_channel: str,
) -> dict[str, Sender]:
    """The outbox's senders of calls, by system. None while neither system is set up,
    so calls queued earlier wait for the settings; with one, a call to the other is
    refused (`not_configured`) and said in the channel."""
    if pager is None and status_page is None:
        return {}
    sender = CallSender(
        runbooks=runbooks, pager=pager, status_page=status_page, announce_channel=announce_channel
    )
    return dict.fromkeys(SYSTEM_NAMES, sender)


class CallSender:
    """Sends the calls to PagerDuty and Statuspage, and records what each left."""

    def __init__(
        self,
        *,
        runbooks: Runbooks,
        pager: PagerGateway | None,
        status_page: StatusPageGateway | None,
        announce_channel: str,
    ) -> None:
        self._runbooks = runbooks
        self._pager = pager
        self._status_page = status_page
        self._announce_channel = announce_channel

    async def send(self, row: OutboxMessage) -> Sent:
        try:
            return Sent(answer=await self._call(row, json.loads(row.text)))
        except ExternalError as exc:
            raise SendFailed(exc.code, permanent=exc.permanent) from exc

    def withheld(self, session: Session, row: OutboxMessage, now: datetime) -> bool:
        """Never: what a private incident tells PagerDuty is `privacy.outside_title`."""
        return False

    async def _call(self, row: OutboxMessage, payload: dict[str, Any]) -> dict[str, Any]:
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

    # Recording, in the transaction that settles the call -------------------------

    def delivered(self, session: Session, row: OutboxMessage, sent: Sent, now: datetime) -> None:
        payload, result = json.loads(row.text), sent.answer
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

    def failed(
        self, session: Session, row: OutboxMessage, failure: SendFailed, now: datetime
    ) -> None:
        incident = incident_store.get(session, row.incident_id)
        if incident is None or (row.attempts and not failure.permanent):
            return  # told once, when it first failed
        payload = json.loads(row.text)
        system = SYSTEM_NAMES[row.channel]
        incident_store.append_event(
            session,
            incident,
            f"{row.channel}.call_failed",
            "firebreak",
            now,
            call=row.id,
            kind=row.kind,
            error=failure.code,
            permanent=failure.permanent,
            service=payload.get("service"),
        )
        self._post(
            session,
            incident,
            now,
            "external_failed.j2",
            system=system,
            kind=row.kind,
            error=failure.code,
            permanent=failure.permanent,
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
