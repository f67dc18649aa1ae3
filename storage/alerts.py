"""Queries on alert deliveries and alert groups (see `AlertDelivery`, `AlertGroup`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import PENDING, AlertDelivery, AlertGroup


def record_delivery(
    session: Session,
    *,
    source: str,
    key_hash: str,
    digest: str,
    payload: dict[str, Any],
    at: datetime,
) -> tuple[int, bool]:
    """Record a delivery; (its id, True) when it repeats the last one of its key instead."""
    latest = session.scalar(
        select(AlertDelivery)
        .where(AlertDelivery.key_hash == key_hash)
        .order_by(AlertDelivery.id.desc())
        .limit(1)
    )
    if latest is not None and latest.digest == digest:
        return latest.id, True
    row = AlertDelivery(
        source=source, key_hash=key_hash, digest=digest, payload=payload, received_at=at
    )
    session.add(row)
    session.flush()
    return row.id, False


def delivery(session: Session, delivery_id: int) -> AlertDelivery | None:
    return session.get(AlertDelivery, delivery_id)


def unprocessed_for_key(session: Session, key_hash: str) -> list[int]:
    query = select(AlertDelivery.id).where(
        AlertDelivery.key_hash == key_hash, AlertDelivery.processed_at.is_(None)
    )
    return list(session.scalars(query.order_by(AlertDelivery.id)))


def unprocessed_keys(session: Session, received_before: datetime) -> list[str]:
    """Keys with a delivery left unprocessed since before `received_before` (a crash)."""
    query = select(AlertDelivery.key_hash).where(
        AlertDelivery.processed_at.is_(None), AlertDelivery.received_at < received_before
    )
    return list(dict.fromkeys(session.scalars(query.order_by(AlertDelivery.id))))


def processed(session: Session, delivery_id: int, outcome: str, at: datetime) -> None:
    row = session.get(AlertDelivery, delivery_id)
    assert row is not None
    row.processed_at, row.outcome = at, outcome[:255]


def active_group(session: Session, key_hash: str) -> AlertGroup | None:
    """The live episode of a key, locked for this transaction (Postgres)."""
    query = select(AlertGroup).where(AlertGroup.active_key == key_hash).with_for_update()
    return session.scalar(query)


def last_group(session: Session, key_hash: str) -> AlertGroup | None:
    query = select(AlertGroup).where(AlertGroup.key_hash == key_hash)
    return session.scalar(query.order_by(AlertGroup.id.desc()).limit(1))


def add_group(session: Session, group: AlertGroup) -> AlertGroup | None:
    """Open an episode; None when a concurrent delivery (another replica) opened it first."""
    try:
        with session.begin_nested():
            session.add(group)
    except IntegrityError:
        return None
    return group


def group(session: Session, group_id: int, *, for_update: bool = False) -> AlertGroup | None:
    query = select(AlertGroup).where(AlertGroup.id == group_id)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def unfinished_groups(session: Session) -> list[int]:
    """Groups owing Slack something: an offer not posted, details not posted, a resolve."""
    query = select(AlertGroup.id).where(
        (
            (AlertGroup.action == "offer")
            & (AlertGroup.offer_ts.is_(None) | (AlertGroup.offer_ts == PENDING))
        )
        | (AlertGroup.incident_id.is_not(None) & AlertGroup.source_posted.is_(False))
        | AlertGroup.resolve_due.is_(True)
    )
    return list(session.scalars(query.order_by(AlertGroup.id)))
