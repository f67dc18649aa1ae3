"""Wiring of the domain services, given their collaborators (no Slack or HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.clock import Clock
from bot.gateway import ChatGateway
from bot.incidents.declare import DeclareFlow
from bot.incidents.outbox import Outbox
from bot.incidents.reminders import ReminderService, ReminderSettings
from bot.incidents.service import IncidentService
from bot.runbooks import Runbooks
from storage.db import Database


@dataclass(frozen=True)
class Services:
    db: Database
    chat: ChatGateway
    runbooks: Runbooks
    clock: Clock
    incidents: IncidentService
    outbox: Outbox
    reminders: ReminderService


def build_services(
    *,
    db: Database,
    chat: ChatGateway,
    runbooks: Runbooks,
    clock: Clock,
    replica_id: str,
    announce_channel: str,
    reminder_settings: ReminderSettings,
) -> Services:
    outbox = Outbox(db=db, chat=chat, runbooks=runbooks, clock=clock, owner=replica_id)
    declare_flow = DeclareFlow(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        outbox=outbox,
        owner=replica_id,
        announce_channel=announce_channel,
    )
    incidents = IncidentService(
        db=db,
        runbooks=runbooks,
        clock=clock,
        outbox=outbox,
        declare_flow=declare_flow,
        announce_channel=announce_channel,
    )
    reminders = ReminderService(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        owner=replica_id,
        settings=reminder_settings,
        outbox=outbox,
    )
    return Services(
        db=db,
        chat=chat,
        runbooks=runbooks,
        clock=clock,
        incidents=incidents,
        outbox=outbox,
        reminders=reminders,
    )
