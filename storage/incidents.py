"""Queries on incidents, roles, checklist items, events and idempotency keys.

Plain functions that take the session as their first argument; the caller
owns the transaction (see `storage.db.Database.run`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage import leases
from storage.leases import LeaseLost as LeaseLost  # what `leased` raises
from storage.models import ChecklistItem, Event, HandledRequest, Incident, Role


def claim_request(session: Session, key: str, at: datetime) -> bool:
    """Record a request's idempotency key; False if it was already handled."""
    try:
        with session.begin_nested():
            session.add(HandledRequest(key=key, at=at))
    except IntegrityError:
        return False
    return True


def find_by_request(session: Session, key: str) -> Incident | None:
    return session.scalar(select(Incident).where(Incident.request_key == key))


def get(session: Session, incident_id: int, *, for_update: bool = False) -> Incident | None:
    query = select(Incident).where(Incident.id == incident_id)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def by_channel(session: Session, channel_id: str, *, for_update: bool = False) -> Incident | None:
    query = select(Incident).where(Incident.channel_id == channel_id)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def by_channel_name(session: Session, name: str) -> Incident | None:
    return session.scalar(select(Incident).where(Incident.channel_name == name))


def open_incidents(session: Session) -> list[Incident]:
    query = select(Incident).where(Incident.status != "resolved").order_by(Incident.declared_at)
    return list(session.scalars(query))


def incident_counts(session: Session) -> dict[tuple[str, str], int]:
    """Not-yet-closed incidents by (severity, status), for the metrics gauge."""
    rows = session.execute(
        select(Incident.severity, Incident.status, func.count())
        .where(Incident.closed_at.is_(None))
        .group_by(Incident.severity, Incident.status)
    )
    return {(severity, status): count for severity, status, count in rows}


def unfinished_setups(session: Session) -> list[int]:
    """Incidents whose declare saga has a step left to do."""
    query = select(Incident.id).where(
        or_(
            Incident.channel_id.is_(None),
            Incident.invited.is_(False),
            Incident.checklist_ts.is_(None),
            Incident.checklist_ts == "pending",
            Incident.checklist_pinned.is_(False),
            Incident.declarer_answered.is_(False),
        )
    )
    return list(session.scalars(query))


def add_incident(
    session: Session,
    *,
    request_key: str,
    title: str,
    description: str,
    severity: str,
    declared_by: str,
    at: datetime,
    origin_channel_id: str | None,
    reply_url: str | None = None,
    reply_until: datetime | None = None,
    private: bool = False,
) -> Incident | None:
    """Insert a new incident; None if this request key already declared one."""
    incident = Incident(
        request_key=request_key,
        title=title,
        description=description,
        severity=severity,
        status="investigating",
        declared_by=declared_by,
        declared_at=at,
        origin_channel_id=origin_channel_id,
        reply_url=reply_url,
        reply_until=reply_until,
        declarer_answered=False,
        invited=False,
        checklist_pinned=False,
        private=private,
    )
    try:
        with session.begin_nested():
            session.add(incident)
    except IntegrityError:
        return None
    return incident


def append_event(
    session: Session,
    incident: Incident,
    type_: str,
    actor: str,
    at: datetime,
    **payload: Any,
) -> Event:
    event = Event(incident_id=incident.id, type=type_, actor=actor, at=at, payload=payload)
    session.add(event)
    return event


def events(session: Session, incident_id: int) -> list[Event]:
    query = select(Event).where(Event.incident_id == incident_id).order_by(Event.at, Event.id)
    return list(session.scalars(query))


def set_role(
    session: Session, incident: Incident, role: str, user_id: str, by: str, at: datetime
) -> str | None:
    """Assign a role and return the previous holder."""
    current = next((r for r in incident.roles if r.role == role), None)
    if current is None:
        incident.roles.append(
            Role(role=role, user_id=user_id, assigned_by=by, assigned_at=at, incident=incident)
        )
        return None
    previous = current.user_id
    current.user_id, current.assigned_by, current.assigned_at = user_id, by, at
    return previous


def add_checklist_items(
    session: Session, incident: Incident, specs: Iterable[tuple[str, str, str]]
) -> int:
    """Add (key, phase, text) items the incident does not have yet; return how many."""
    have = {item.key for item in incident.checklist}
    position = max((item.position for item in incident.checklist), default=-1)
    added = 0
    for key, phase, text in specs:
        if key in have:
            continue
        position += 1
        added += 1
        incident.checklist.append(
            ChecklistItem(key=key, phase=phase, text=text, position=position, incident=incident)
        )
    return added


def claim_channel_name(session: Session, incident: Incident, name: str) -> bool:
    """Reserve a channel name for this incident; False if another incident holds it."""
    try:
        with session.begin_nested():
            incident.channel_name = name
            session.flush()
    except IntegrityError:
        session.refresh(incident)
        return False
    return True


def acquire_lease(
    session: Session, incident_id: int, owner: str, now: datetime, ttl: timedelta
) -> int | None:
    """Take the incident's lease if it is free or lapsed; returns the new fencing token."""
    return leases.acquire(session, Incident.id, incident_id, owner, now, ttl)


def renew_lease(
    session: Session, incident_id: int, token: int, now: datetime, ttl: timedelta
) -> bool:
    """Extend the lease; False if another holder has taken it since (a newer token)."""
    return leases.renew(session, Incident.id, incident_id, token, now, ttl)


def release_lease(session: Session, incident_id: int, token: int) -> None:
    leases.release(session, Incident.id, incident_id, token)


def leased(session: Session, incident_id: int, token: int) -> Incident:
    """The incident, locked, for a write guarded by the lease with `token` (else
    `LeaseLost`)."""
    incident: Incident = leases.held(session, Incident.id, incident_id, token)
    return incident
