"""The public status page: a preview of exactly what customers will read, published
only when the commander or the comms lead confirms it.

`/incident statuspage <status> [text]` records a draft (an event) and posts its preview
in the channel with **Publish** and **Cancel**; anyone may draft, so the comms lead
can publish what a responder wrote. Publishing queues the Statuspage call in the same
transaction (see `delivery.py`): the first publish opens the public incident with the
affected components, later ones add updates, and an outage only delays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot import commands as c
from bot.actions.catalog import ActionCatalog
from bot.context import Context, Service
from bot.durations import format_duration
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.incidents import followup
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.messages import Button, Buttons, Card, Section
from bot.mrkdwn import escape, mention
from bot.paging.delivery import PUBLISH, enqueue_call
from bot.paging.service import PagingService, paged_services, public_plain
from storage import incidents as store
from storage import paging as paging_store
from storage.models import Incident
from storage.outbox import enqueue

PUBLISH_ACTION = "statuspage_publish"
CANCEL_ACTION = "statuspage_cancel"
NOT_CONFIGURED = "Statuspage is not configured (set STATUSPAGE_API_KEY; see the README)."
PUBLISHERS = ("commander", "comms")
# Component status by severity while the incident is open (the mapping).
OUTAGE = {"P0": "major_outage", "P1": "partial_outage"}


class StatusPageService(Service):
    def __init__(
        self,
        context: Context,
        *,
        catalog: ActionCatalog,
        outbox: Outbox,
        paging: PagingService,
        configured: bool,
    ) -> None:
        super().__init__(context)
        self._catalog = catalog
        self._outbox = outbox
        self._paging = paging
        self._configured = configured

    async def draft(self, command: c.DraftStatusPage, request: Request) -> str:
        """Record the draft and post its preview with Publish and Cancel."""
        if not self._configured:
            return NOT_CONFIGURED
        preview = await self._db.run(self._record_draft, command, request)
        if preview is None:
            return ""  # a redelivery: the preview is already posted
        await self._chat.post(request.channel_id, preview)
        return ""

    def _record_draft(
        self, session: Session, command: c.DraftStatusPage, request: Request
    ) -> Card | None:
        incident = store.by_channel(session, request.channel_id, for_update=True)
        if incident is None:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        if incident.closed_at is not None:
            raise UserError(followup.refusal(incident))
        now = self._clock.now()
        if not store.claim_request(session, request.key, now):
            return None
        return self._drafted(session, incident, command, request.actor, now)

    # Hooks called inside the incident service's transactions ------------------------

    def declared(
        self, session: Session, incident: Incident, now: datetime, service: str | None
    ) -> None:
        """Nothing: what customers read about a new incident is a person's call."""

    def severity_changed(self, session: Session, incident: Incident, now: datetime) -> None:
        """Nothing: a new severity changes the components' status at the next publish."""

    def resolved(self, session: Session, incident: Incident, actor: str, now: datetime) -> None:
        """Customers still read an unresolved update: queue the resolved update's preview,
        with Publish and Cancel, as `/incident statuspage resolved` would post it."""
        published = paging_store.events(session, incident.id, "statuspage.published")
        if not self._configured or not incident.channel_id or not published:
            return
        if published[-1].payload.get("status") == "resolved":
            return
        preview = self._drafted(session, incident, c.DraftStatusPage("resolved", ""), actor, now)
        enqueue(
            session,
            incident.id,
            "card",
            now,
            channel=incident.channel_id,
            text=preview.to_json(),
        )

    def _drafted(
        self,
        session: Session,
        incident: Incident,
        command: c.DraftStatusPage,
        actor: str,
        now: datetime,
    ) -> Card:
        """Record the draft; its preview, with Publish and Cancel."""
        components = self._components(session, incident, command.status)
        body = public_plain(command.message) or self._default_text(session, incident, command)
        first = not paging_store.events(session, incident.id, "statuspage.published")
        event = store.append_event(
            session,
            incident,
            "statuspage.drafted",
            actor,
            now,
            status=command.status,
            body=body,
            name=public_plain(incident.title),
            components=components,
        )
        session.flush()
        names = [(self._component_name(cid), state) for cid, state in components.items()]
        text = self._runbooks.templates.render(
            "statuspage_preview.j2",
            status=command.status,
            body=body,
            components=names,
            first=first,
            incident_name=public_plain(incident.title),
        )
        return _buttons(text, event.id)

    def _components(self, session: Session, incident: Incident, status: str) -> dict[str, str]:
        """The affected services' components and the status customers will see."""
        state = (
            "operational"
            if status == "resolved"
            else OUTAGE.get(incident.severity, "degraded_performance")
        )
        names = paged_services(session, incident.id) or [
            t.name for t in self._paging.services_named(incident.title)
        ]
        return {
            target.statuspage.component_id: state
            for name in names
            if (target := self._catalog.targets.get(name)) and target.statuspage
        }

    def _component_name(self, component_id: str) -> str:
        return next(
            (
                name
                for name, t in self._catalog.targets.items()
                if t.statuspage and t.statuspage.component_id == component_id
            ),
            component_id,
        )

    def _default_text(
        self, session: Session, incident: Incident, command: c.DraftStatusPage
    ) -> str:
        names = paged_services(session, incident.id) or [
            t.name for t in self._paging.services_named(incident.title)
        ]
        cadence = self._runbooks.severities.levels[incident.severity].update_cadence
        return self._runbooks.templates.render(
            f"statuspage_{command.status}.j2",
            services=" and ".join(n.capitalize() for n in names) or "our service",
            plural=len(names) > 1,
            cadence=format_duration(cadence) if cadence else "the hour",
        )

    async def decide(self, draft_id: int, publish: bool, request: Request, ts: str) -> str:
        """Publish (commander or comms lead only) or cancel a draft, once."""
        outcome = await self._db.run(self._decide, draft_id, publish, request)
        if outcome.refusal:
            return outcome.refusal
        await self._chat.update(request.channel_id, ts, Card.text(outcome.line))
        if publish:
            await self._outbox.deliver(outcome.incident_id)
            return await self._db.run(_publish_failure, outcome.call_id)
        return ""

    def _decide(
        self, session: Session, draft_id: int, publish: bool, request: Request
    ) -> _Decision:
        incident = store.by_channel(session, request.channel_id, for_update=True)
        draft = paging_store.event(session, draft_id)
        if incident is None or draft is None or draft.incident_id != incident.id:
            return _Decision(refusal="That preview is no longer valid; draft it again.")
        if incident.closed_at is not None and draft.payload.get("status") != "resolved":
            # Only the resolved update may still go out: customers must not be left
            # reading an unresolved incident because it was closed before publishing.
            return _Decision(refusal=followup.refusal(incident))
        holders = [incident.role(r) for r in PUBLISHERS]
        if publish and request.actor not in holders:
            who = " or ".join(mention(u) for u in holders if u) or "nobody yet"
            return _Decision(
                refusal=(
                    "Only the commander or the comms lead can publish to the status page "
                    f"(now {who}). Ask them, or `/incident assign comms @you`."
                )
            )
        now = self._clock.now()
        if not store.claim_request(session, f"statuspage.draft:{draft_id}", now):
            return _Decision(refusal="That preview was already published or cancelled.")
        if not publish:
            store.append_event(
                session, incident, "statuspage.cancelled", request.actor, now, draft=draft_id
            )
            return _Decision(
                incident.id, line=f"Not published: cancelled by {mention(request.actor)}."
            )
        store.append_event(
            session, incident, "statuspage.publish_requested", request.actor, now, draft=draft_id
        )
        call = enqueue_call(
            session, incident, PUBLISH, now, **draft.payload, actor=request.actor, draft=draft_id
        )
        session.flush()
        quoted = escape(f"{str(draft.payload['status']).capitalize()} — {draft.payload['body']}")
        line = f">{quoted}\n_Publish confirmed by {mention(request.actor)}._"
        return _Decision(incident.id, call_id=call.id, line=line)


@dataclass(frozen=True)
class _Decision:
    incident_id: int = 0
    refusal: str = ""
    line: str = ""
    call_id: int | None = None


def _publish_failure(session: Session, call_id: int | None) -> str:
    row = paging_store.row(session, call_id) if call_id else None
    if row is None or not row.last_error or row.delivered_at is not None:
        return ""
    if row.failed_at is not None:
        return f":x: Statuspage refused the update (`{row.last_error}`); it will not be retried."
    return (
        f":warning: Statuspage did not answer (`{row.last_error}`): the update is queued and "
        "will be published when it is back."
    )


def _buttons(text: str, draft_id: int) -> Card:
    value = str(draft_id)
    buttons = (
        Button("Publish", PUBLISH_ACTION, value, primary=True),
        Button("Cancel", CANCEL_ACTION, value),
    )
    return Card.of(Section(text), Buttons(buttons, marker=f"statuspage-{draft_id}"))
