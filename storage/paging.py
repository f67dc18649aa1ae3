"""Queries for the calls owed to PagerDuty and Statuspage (outbox rows whose
destination is one of `EXTERNAL_DESTINATIONS`) and the paging events they leave."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Event, OutboxMessage
from storage.outbox import EXTERNAL_DESTINATIONS


def due(session: Session, now: datetime, incident_id: int | None = None) -> list[OutboxMessage]:
    """Undelivered calls whose retry time has come, oldest first."""
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.channel.in_(EXTERNAL_DESTINATIONS),
            OutboxMessage.delivered_at.is_(None),
            OutboxMessage.failed_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
        )
        .order_by(OutboxMessage.id)
        .limit(200)
    )
    if incident_id is not None:
        query = query.where(OutboxMessage.incident_id == incident_id)
    return list(session.scalars(query))


def row(session: Session, row_id: int) -> OutboxMessage | None:
    return session.get(OutboxMessage, row_id)


def events(session: Session, incident_id: int, prefix: str) -> list[Event]:
    """The incident's events whose type starts with `prefix`, oldest first."""
    query = (
        select(Event)
        .where(Event.incident_id == incident_id, Event.type.startswith(prefix))
        .order_by(Event.id)
    )
    return list(session.scalars(query))


def event(session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id)
