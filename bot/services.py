"""Wiring of the domain services, given their collaborators (no Slack or HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.actions import ActionCatalog, ActionService, Executors
from bot.clock import Clock
from bot.gateway import ChatGateway
from bot.incidents.declare import DeclareFlow
from bot.incidents.outbox import Outbox
from bot.incidents.reminders import ReminderService, ReminderSettings
from bot.incidents.service import IncidentService
from bot.metrics import Metrics
from bot.postmortem.service import PostmortemService
from bot.runbooks import Runbooks
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

    async def sweep(self) -> None:
        """Finish whatever is half-done (declare sagas, queued messages, exports); prune."""
        await self.incidents.resume_unfinished()
        await self.postmortems.resume_pending_exports()
        await self.db.run(prune_handled, self.clock.now() - KEEP_REQUEST_KEYS)


@dataclass(frozen=True)
class ServiceSettings:
    replica_id: str
    announce_channel: str
    reminders: ReminderSettings
    postmortem_dir: Path
    archive_on_close: bool


def build_services(
    *,
    db: Database,
    chat: ChatGateway,
    runbooks: Runbooks,
    clock: Clock,
    catalog: ActionCatalog,
    executors: Executors,
    settings: ServiceSettings,
    metrics: Metrics | None = None,
) -> Services:
    metrics = metrics or Metrics()
    outbox = Outbox(db=db, chat=chat, runbooks=runbooks, clock=clock, owner=settings.replica_id)
    declare_flow = DeclareFlow(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        outbox=outbox,
        owner=settings.replica_id,
        announce_channel=settings.announce_channel,
    )
    incidents = IncidentService(
        db=db,
        runbooks=runbooks,
        clock=clock,
        outbox=outbox,
        declare_flow=declare_flow,
        announce_channel=settings.announce_channel,
    )
    return Services(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        incidents=incidents,
        outbox=outbox,
        reminders=ReminderService(
            db=db,
            chat=chat,
            runbooks=runbooks,
            clock=clock,
            owner=settings.replica_id,
            settings=settings.reminders,
            outbox=outbox,
            metrics=metrics,
        ),
        actions=ActionService(
            db=db,
            chat=chat,
            runbooks=runbooks,
            clock=clock,
            catalog=catalog,
            executors=executors,
            outbox=outbox,
            metrics=metrics,
        ),
        postmortems=PostmortemService(
            db=db,
            chat=chat,
            runbooks=runbooks,
            clock=clock,
            incidents=incidents,
            announce_channel=settings.announce_channel,
            postmortem_dir=settings.postmortem_dir,
            archive_on_close=settings.archive_on_close,
        ),
    )
