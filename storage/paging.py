"""Queries for the calls owed to PagerDuty and Statuspage (outbox rows; storage/outbox.py
finds the due ones) and the paging events they leave."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Event, OutboxMessage


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
