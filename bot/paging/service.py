"""Paging: page a service's on-call, say who is on call, follow PagerDuty's webhooks.

Each change is one transaction that appends its event and queues the PagerDuty call
it owes (see `delivery.py`), then delivers. The declare and resolve of an incident
reach here through `IncidentHooks`, inside their own transactions, so a page is
never lost between the declaration and the call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot import commands as c
from bot import logs
from bot.actions.catalog import ActionCatalog, Target
from bot.context import Context, Service
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.gateway import ChatError
from bot.incidents import followup, privacy
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.mrkdwn import escape, truncate
from bot.paging.delivery import PAGE, PAGERDUTY, RESOLVE, SYSTEM_NAMES, enqueue_call
from bot.paging.gateways import ExternalError, PagerGateway
from bot.paging.webhook import PagerDutyEvent
from storage import incidents as store
from storage import paging as paging_store
from storage.models import Incident
from storage.outbox import enqueue, queued_in

log = logging.getLogger(__name__)

NOT_CONFIGURED = "PagerDuty is not configured (set PAGERDUTY_API_TOKEN; see the README)."
_INCIDENT_KEY = re.compile(r"^firebreak-(\d{1,12})$")
DETAILS_MAX = 1024  # what PagerDuty shows in a phone call or SMS


_SLACK_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^<>]*)>")


def public_plain(text: str) -> str:
    """User text bound for PagerDuty or Statuspage: plain text, not mrkdwn. Slack's
    entities and links are decoded where the payload is read (`mrkdwn.from_slack`);
    mentions mean nothing outside Slack, so they are refused by the callers. Here a
    channel reference becomes `#name` and whitespace is normalised."""
    text = _SLACK_CHANNEL.sub(lambda m: f"#{m.group(1)}", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class PageRequest:
    service: str
    service_id: str
    escalation_policy_id: str


class PagingService(Service):
    def __init__(
        self,
        context: Context,
        *,
        catalog: ActionCatalog,
        outbox: Outbox,
        pager: PagerGateway | None,
    ) -> None:
        super().__init__(context)
        self._catalog = catalog
        self._outbox = outbox
        self._pager = pager

    # Hooks called inside the incident service's transactions --------------------

    def declared(
        self, session: Session, incident: Incident, now: datetime, service: str | None
    ) -> None:
        """Page the service the source named (an alert's label) and those the title
        names, if the severity pages."""
        self._page_named(session, incident, incident.declared_by, now, service)

    def severity_changed(self, session: Session, incident: Incident, now: datetime) -> None:
        """Raised to a paging severity: page the named services not paged yet, the
        service its source named at the declaration (an alert's label) included."""
        self._page_named(session, incident, "firebreak", now, _declared_service(session, incident))

    def response_overdue(self, session: Session, incident: Incident, now: datetime) -> None:
        """Nobody took the incident on within its severity's response target (reminders):
        page the services it names, whatever the severity's own `page` says."""
        self._page_named(
            session, incident, "firebreak", now, _declared_service(session, incident), force=True
        )

    def _page_named(
        self,
        session: Session,
        incident: Incident,
        actor: str,
        now: datetime,
        service: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        severity = self._runbooks.severities.levels[incident.severity]
        if not (severity.page or force) or self._pager is None:
            return
        paged = paged_services(session, incident.id)
        named = self.services_named(f"{service or ''} {incident.title}")
        for target in named:
            if target.pagerduty is not None and target.name not in paged:
                self._request_page(session, incident, target, actor, now, "")

    def resolved(self, session: Session, incident: Incident, actor: str, now: datetime) -> None:
        """Resolve the pages in PagerDuty (the status page's offer is its own hook)."""
        for service in paged_services(session, incident.id):
            target = self._catalog.targets.get(service)
            if target is not None and target.pagerduty is not None:
                enqueue_call(
                    session,
                    incident,
                    RESOLVE,
                    now,
                    service=service,
                    service_id=target.pagerduty.service_id,
                    actor=actor,
                )

    def services_named(self, text: str) -> list[Target]:
        """Configured services named as a word of `text` (`checkout API down` → checkout)."""
        words = set(re.findall(r"[a-z0-9][a-z0-9-]*", text.lower()))
        return [t for name, t in sorted(self._catalog.targets.items()) if name in words]

    # Commands --------------------------------------------------------------------

    async def page(self, command: c.Page, request: Request) -> str:
        if self._pager is None:
            return NOT_CONFIGURED
        target = self._catalog.targets.get(command.service)
        if target is None or target.pagerduty is None:
            pageable = ", ".join(
                f"`{n}`" for n, t in sorted(self._catalog.targets.items()) if t.pagerduty
            )
            return (
                f"No PagerDuty service is configured for `{escape(command.service)}`. "
                f"Pageable: {pageable or 'none'}."
            )

        def change(session: Session, incident: Incident, now: datetime) -> str:
            self._request_page(
                session, incident, target, request.actor, now, public_plain(command.message)
            )
            return ""

        return await self._change_then_deliver(request, change)

    async def oncall(self, command: c.ShowOnCall, request: Request) -> str:
        """Who is on call now; in an incident channel, invite them."""
        if self._pager is None:
            return NOT_CONFIGURED
        incident = await self._db.run(store.by_channel, request.channel_id)
        if command.service is not None:
            target = self._catalog.targets.get(command.service)
            if target is None or target.pagerduty is None:
                return f"No PagerDuty service is configured for `{escape(command.service)}`."
            targets = [target]
        else:
            paged = await self._db.run(paged_services, incident.id) if incident else []
            targets = [
                t
                for name, t in sorted(self._catalog.targets.items())
                if t.pagerduty and (not paged or name in paged)
            ]
        rota: list[tuple[str, list[dict[str, object]]]] = []
        invited: list[str] = []
        unknown: list[str] = []
        try:
            for target in targets:
                assert target.pagerduty is not None
                people: list[dict[str, object]] = []
                for person in await self._pager.oncalls(target.pagerduty.escalation_policy_id):
                    user = await self._chat.user_by_email(person.email) if person.email else None
                    people.append({"name": person.name, "level": person.level, "user": user})
                    if user is None:
                        unknown.append(person.name)
                    elif person.level == 1 and user not in invited:
                        invited.append(user)
                rota.append((target.name, people))
        except ExternalError as exc:
            return f"PagerDuty did not answer (`{exc.code}`); try again in a moment."
        except ChatError as exc:
            scope = " (the app needs the `users:read.email` scope)" if "scope" in exc.code else ""
            return f"Slack refused to look up the on-call by email (`{exc.code}`){scope}."
        if incident is not None and invited:
            await self._db.run(self._record_invites, incident.id, invited, request)
            await self._outbox.deliver(incident.id)
        else:
            invited = []
        return self._runbooks.templates.render(
            "oncall.j2", rota=rota, invited=invited, unknown=sorted(set(unknown))
        )

    def _record_invites(
        self, session: Session, incident_id: int, users: list[str], request: Request
    ) -> None:
        incident = store.get(session, incident_id, for_update=True)
        if incident is None or not store.claim_request(session, request.key, self._clock.now()):
            return
        now = self._clock.now()
        store.append_event(
            session, incident, "paging.oncall_invited", request.actor, now, users=users
        )
        for user in users:
            enqueue(session, incident.id, "invite", now, text=user)

    # PagerDuty's webhooks ----------------------------------------------------------

    async def on_webhook(self, event: PagerDutyEvent) -> None:
        """Record an acknowledgement or a resolve once (by the webhook event's ID)."""
        match = _INCIDENT_KEY.match(event.incident_key or "")
        if match is None:
            log.info("PagerDuty %s for an incident Firebreak did not page", event.type)
            return
        commander = None
        if event.type == "incident.acknowledged" and event.agent_id and self._pager:
            # Who it was is a nicety; the acknowledgement is recorded whatever happens here.
            try:
                email = await self._pager.user_email(event.agent_id)
                commander = await self._chat.user_by_email(email) if email else None
            except (ExternalError, ChatError) as exc:
                log.warning("could not look up who acknowledged: %s", exc)
        incident_id = await self._db.run(
            self._record_webhook, int(match.group(1)), event, commander
        )
        if incident_id is not None:
            logs.incident_id.set(incident_id)
            await self._outbox.deliver(incident_id)

    def _record_webhook(
        self, session: Session, incident_id: int, event: PagerDutyEvent, user: str | None
    ) -> int | None:
        incident = store.get(session, incident_id, for_update=True)
        now = self._clock.now()
        if incident is None or not store.claim_request(session, f"pagerduty:{event.id}", now):
            return None
        if incident.closed_at is not None:
            # Its post-mortem covers it until the close: PagerDuty's news comes too late.
            log.info("PagerDuty %s for closed incident #%s: ignored", event.type, incident.id)
            return None
        acknowledged = event.type == "incident.acknowledged"
        store.append_event(
            session,
            incident,
            "paging.acknowledged" if acknowledged else "paging.resolved",
            user or "pagerduty",
            now,
            pagerduty_incident=event.pagerduty_incident,
            by=event.agent_name,
            occurred_at=event.occurred_at,
        )
        commander = None
        if acknowledged and user and incident.role("commander") is None:
            commander = user
            store.set_role(session, incident, "commander", user, "pagerduty", now)
            store.append_event(
                session, incident, "role", "pagerduty", now, role="commander", user=user
            )
            enqueue(session, incident.id, "invite", now, text=user)
            enqueue(session, incident.id, "topic", now)
        if incident.channel_id and (acknowledged or incident.status != "resolved"):
            template = "paging_acknowledged.j2" if acknowledged else "paging_resolved.j2"
            text = self._runbooks.templates.render(
                template, incident=incident, who=event.agent_name or "someone", commander=commander
            )
            enqueue(session, incident.id, "post", now, channel=str(incident.channel_id), text=text)
        return incident.id

    # Plumbing ------------------------------------------------------------------------

    def _request_page(
        self,
        session: Session,
        incident: Incident,
        target: Target,
        actor: str,
        now: datetime,
        message: str,
    ) -> None:
        assert target.pagerduty is not None
        # PagerDuty is read by more people than a private incident's channel holds: its
        # title and description stay in Slack; what a responder typed to page is sent.
        if privacy.broadcasts(incident):
            title = public_plain(incident.title)
            details = message or incident.description or incident.title
        else:
            title = privacy.outside_title(incident)
            details = message or title
        store.append_event(
            session, incident, "paging.requested", actor, now, service=target.name, message=message
        )
        enqueue_call(
            session,
            incident,
            PAGE,
            now,
            service=target.name,
            service_id=target.pagerduty.service_id,
            escalation_policy_id=target.pagerduty.escalation_policy_id,
            title=truncate(f"[{incident.severity}] {title}", DETAILS_MAX),
            details=details[:DETAILS_MAX],
            actor=actor,
        )

    async def _change_then_deliver(
        self, request: Request, change: Callable[[Session, Incident, datetime], str]
    ) -> str:
        def work(session: Session) -> tuple[int, str, list[int]]:
            incident = store.by_channel(session, request.channel_id, for_update=True)
            if incident is None:
                raise UserError(NOT_AN_INCIDENT_CHANNEL)
            if incident.closed_at is not None:
                raise UserError(followup.refusal(incident))
            now = self._clock.now()
            if not store.claim_request(session, request.key, now):
                return incident.id, "", []
            reply = change(session, incident, now)
            calls = queued_in(session, PAGERDUTY)
            return incident.id, reply, calls

        incident_id, reply, calls = await self._db.run(work)
        logs.incident_id.set(incident_id)
        await self._outbox.deliver(incident_id)
        failed = await self._db.run(_failures, calls)
        if failed:
            return (reply + "\n" if reply else "") + failed
        return reply


def _declared_service(session: Session, incident: Incident) -> str | None:
    """The service its source named at the declaration (an alert's label), if any."""
    declared = paging_store.events(session, incident.id, "declared")
    return declared[0].payload.get("service") if declared else None


def paged_services(session: Session, incident_id: int) -> list[str]:
    """The services paged for an incident, in the order they were first paged."""
    names: list[str] = []
    for event in paging_store.events(session, incident_id, "paging.requested"):
        name = str(event.payload.get("service"))
        if name not in names:
            names.append(name)
    return names


def _failures(session: Session, row_ids: list[int]) -> str:
    """What the requester should know about calls that did not go through (yet)."""
    lines = []
    for row_id in row_ids:
        row = paging_store.row(session, row_id)
        if row is None or not row.last_error or row.delivered_at is not None:
            continue
        system = SYSTEM_NAMES[row.channel]
        what = {PAGE: "the page", RESOLVE: "resolving the page"}.get(row.kind, "the update")
        if row.failed_at is not None:
            lines.append(
                f":x: {system} refused {what} (`{row.last_error}`); it will not be retried."
            )
        else:
            lines.append(
                f":warning: {system} did not answer (`{row.last_error}`): {what} is queued "
                "and will be retried."
            )
    return "\n".join(lines)
