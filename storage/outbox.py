"""Queries on the outbox of Slack messages owed (see `OutboxMessage`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage.models import OutboxMessage

# Rows for these destinations are calls to other systems (bot/paging/delivery.py), not
# Slack messages: the Slack outbox leaves them alone.
EXTERNAL_DESTINATIONS = ("pagerduty", "statuspage")


def enqueue(
    session: Session,
    incident_id: int,
    kind: str,
    now: datetime,
    *,
    channel: str = "",
    text: str = "",
    thread_ts: str | None = None,
) -> OutboxMessage:
    message = OutboxMessage(
        incident_id=incident_id,
        kind=kind,
        channel=channel,
        text=text,
        thread_ts=thread_ts,
        created_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    session.add(message)
    return message


def due(session: Session, now: datetime, incident_id: int | None = None) -> list[OutboxMessage]:
    """Undelivered rows whose retry time has come, oldest first."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.next_attempt_at <= now)
        .where(OutboxMessage.channel.not_in(EXTERNAL_DESTINATIONS))
        .order_by(OutboxMessage.incident_id, OutboxMessage.id)
        .limit(500)
    )
    if incident_id is not None:
        query = query.where(OutboxMessage.incident_id == incident_id)
    return list(session.scalars(query))


def pending_count(session: Session, incident_id: int) -> int:
    query = select(OutboxMessage.id).where(
        OutboxMessage.incident_id == incident_id, OutboxMessage.delivered_at.is_(None)
    )
    return len(list(session.scalars(query)))


def claim(session: Session, message_id: int, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take a row for delivery; False if another replica or task holds it."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.delivered_at.is_(None),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .values(claimed_by=owner, claimed_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def delivered(session: Session, message_id: int, ts: str | None, now: datetime) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(delivered_at=now, delivered_ts=ts, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def failed(session: Session, message_id: int, error: str, retry_at: datetime) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=error[:255],
            next_attempt_at=retry_at,
            claimed_by=None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )
