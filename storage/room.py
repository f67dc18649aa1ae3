"""Queries behind the live room: events recorded once, and when Firebreak was listening."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Event, Listener

ROOM = "room."  # the prefix of the events recorded from the channel itself


def heartbeat(session: Session, owner: str, now: datetime, stale: timedelta) -> None:
    """Extend this process's listening span to `now`; a span last seen longer than
    `stale` ago (a stall, a lost database) is closed and a new one begins."""
    row = session.scalar(
        select(Listener).where(Listener.owner == owner).order_by(Listener.id.desc()).limit(1)
    )
    if row is not None and now - row.seen_at <= stale:
        row.seen_at = max(row.seen_at, now)
        return
    session.add(Listener(owner=owner, started_at=now, seen_at=now))


def spans(session: Session, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """Listening spans overlapping [since, until], in start order."""
    rows = session.execute(
        select(Listener.started_at, Listener.seen_at)
        .where(Listener.seen_at >= since, Listener.started_at <= until)
        .order_by(Listener.started_at)
    )
    return [(start, seen) for start, seen in rows]


def log_events(session: Session, incident_id: int) -> list[Event]:
    """The incident's log without the channel's own events (`room.*`)."""
    query = (
        select(Event)
        .where(Event.incident_id == incident_id, Event.type.not_like(f"{ROOM}%"))
        .order_by(Event.at, Event.id)
    )
    return list(session.scalars(query))


class Recorded(NamedTuple):
    """A `room.*` event as plain columns: a 50k-message channel loads as tuples, not ORM
    objects, for the post-mortem's sake."""

    type: str
    actor: str
    at: datetime
    payload: dict[str, Any]


def recorded(session: Session, incident_id: int) -> list[Recorded]:
    """The channel's own events (`room.*`) in the order they happened."""
    rows = session.execute(
        select(Event.type, Event.actor, Event.at, Event.payload)
        .where(Event.incident_id == incident_id, Event.type.like(f"{ROOM}%"))
        .order_by(Event.at, Event.id)
    )
    return [Recorded(t, a, at, p or {}) for t, a, at, p in rows]
