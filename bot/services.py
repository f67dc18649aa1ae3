"""Wiring of the domain services, given their collaborators (no Slack or HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.actions import ActionCatalog, ActionService, Executors
from bot.actions.evidence import EvidenceService
from bot.alerts.service import AlertService
from bot.clock import Clock
from bot.context import Context, Spawn
from bot.gateway import ChatGateway
from bot.incidents.declare import DeclareFlow
from bot.incidents.hooks import AllHooks
from bot.incidents.outbox import Outbox
from bot.incidents.reminders import ReminderService, ReminderSettings
from bot.incidents.service import IncidentService
from bot.metrics import Metrics
from bot.paging.delivery import call_senders
from bot.paging.gateways import PagerGateway, StatusPageGateway
from bot.paging.service import PagingService
from bot.paging.statuspage import StatusPageService
from bot.postmortem.service import PostmortemService
from bot.room.service import RoomService
from bot.runbooks import Runbooks
from bot.triage import ScenarioCatalog
from bot.triage.service import TriageService
from storage.db import Database
from storage.inbox import prune_handled

# Idempotency keys are kept this long: Slack redelivers an event within minutes
# (retries at 1 and 5 minutes), so an hour is ample; the keys of a request still
# waiting in the inbox are kept until it is handled (storage/inbox.py).
KEEP_REQUEST_KEYS = timedelta(hours=1)


@dataclass(frozen=True)
class Services:
    db: Database
    chat: ChatGateway
    runbooks: Runbooks
    clock: Clock
    incidents: IncidentService
    outbox: Outbox
    reminders: ReminderService
    actions: ActionService
    postmortems: PostmortemService
    alerts: AlertService
    paging: PagingService
    statuspage: StatusPageService
    evidence: EvidenceService
    triage: TriageService
    room: RoomService

    @property
    def context(self) -> Context:
        return Context(self.db, self.chat, self.runbooks, self.clock)

    async def sweep(self) -> None:
        """Finish whatever is half-done (declare sagas, queued messages, triages, exports);
        prune."""
        await self.room.heartbeat()
        await self.incidents.resume_unfinished()
        await self.triage.resume_unfinished()
        await self.postmortems.resume_pending_exports()
        await self.alerts.resume()
        await self.db.run(prune_handled, self.clock.now() - KEEP_REQUEST_KEYS)


@dataclass(frozen=True)
class ServiceSettings:
    replica_id: str
    announce_channel: str
    reminders: ReminderSettings
    postmortem_dir: Path
    archive_on_close: bool
    evidence_dir: Path | None = None


def build_services(
    *,
    db: Database,
    chat: ChatGateway,
    runbooks: Runbooks,
    clock: Clock,
    catalog: ActionCatalog,
    scenarios: ScenarioCatalog,
    executors: Executors,
    settings: ServiceSettings,
    spawn: Spawn,
    metrics: Metrics | None = None,
    pager: PagerGateway | None = None,
    status_page: StatusPageGateway | None = None,
) -> Services:
    metrics = metrics or Metrics()
    context = Context(db, chat, runbooks, clock)
    outbox = Outbox(
        context,
        owner=settings.replica_id,
        announce_channel=settings.announce_channel,
        metrics=metrics,
        external=call_senders(
            runbooks=runbooks,
            pager=pager,
            status_page=status_page,
            announce_channel=settings.announce_channel,
        ),
    )
    actions = ActionService(
        context,
        catalog=catalog,
        executors=executors,
        outbox=outbox,
        metrics=metrics,
    )
    triage = TriageService(
        context,
        scenarios=scenarios,
        catalog=catalog,
        actions=actions,
        outbox=outbox,
        owner=settings.replica_id,
        spawn=spawn,
    )
    declare_flow = DeclareFlow(
        context,
        outbox=outbox,
        owner=settings.replica_id,
        announce_channel=settings.announce_channel,
        security_responders=catalog.security_responders,
        triage=triage,
    )
    paging = PagingService(
        context,
        catalog=catalog,
        outbox=outbox,
        pager=pager,
    )
    statuspage = StatusPageService(
        context,
        catalog=catalog,
        outbox=outbox,
        paging=paging,
        configured=status_page is not None,
    )
    incidents = IncidentService(
        context,
        outbox=outbox,
        declare_flow=declare_flow,
        announce_channel=settings.announce_channel,
        hooks=AllHooks(paging, statuspage),
        triage=triage,
    )
    return Services(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        incidents=incidents,
        outbox=outbox,
        reminders=ReminderService(
            context,
            owner=settings.replica_id,
            settings=settings.reminders,
            outbox=outbox,
            metrics=metrics,
            escalation=paging,
        ),
        actions=actions,
        postmortems=PostmortemService(
            context,
            incidents=incidents,
            actions=actions,
            announce_channel=settings.announce_channel,
            postmortem_dir=settings.postmortem_dir,
            archive_on_close=settings.archive_on_close,
        ),
        alerts=AlertService(
            context,
            outbox=outbox,
            declare_flow=declare_flow,
            incidents=incidents,
            announce_channel=settings.announce_channel,
        ),
        paging=paging,
        statuspage=statuspage,
        evidence=EvidenceService(
            context,
            catalog=catalog,
            kubernetes=executors.kubernetes,
            outbox=outbox,
            folder=settings.evidence_dir,
        ),
        triage=triage,
        room=RoomService(context, owner=settings.replica_id),
    )
