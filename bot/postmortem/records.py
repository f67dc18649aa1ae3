"""The post-mortem's database work: plain functions taking the session first.

One `Postmortem` row per incident (unique), written when the incident is
closed, in the same transaction as the `closed` event: that row is the
export record. Its steps (document, file written, uploaded, announced) are
filled in as they complete, so a retry does only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from storage import incidents as store
from storage.models import Event, Incident, Postmortem

PENDING_EXPORT = "pending_export"
EXPORTED = "exported"


@dataclass(frozen=True)
class CloseStart:
    incident_id: int
    needs_resolution: bool = False  # not resolved, or resolved without a summary
    resolved: bool = False
    closed_before: datetime | None = None  # set when an earlier close made the row


def incident_for_channel(session: Session, channel_id: str) -> int:
    incident = store.by_channel(session, channel_id)
    if incident is None:
        raise UserError(NOT_AN_INCIDENT_CHANNEL)
    return incident.id


def find_incident(session: Session, ref: str) -> int | None:
    """An incident by ID (`42`, `#42`) or channel name (`incident-…`, `#incident-…`)."""
    ref = ref.strip().lstrip("#")
    if ref.isdigit():
        incident = store.get(session, int(ref))
    else:
        incident = session.scalar(select(Incident).where(Incident.channel_name == ref))
    return None if incident is None else incident.id


def load(session: Session, incident_id: int) -> tuple[Incident, list[Event], Postmortem | None]:
    incident = store.get(session, incident_id)
    assert incident is not None
    return incident, store.events(session, incident_id), row_for(session, incident_id)


def row_for(session: Session, incident_id: int) -> Postmortem | None:
    return session.scalar(select(Postmortem).where(Postmortem.incident_id == incident_id))


def begin_close(session: Session, channel_id: str, actor: str, now: datetime) -> CloseStart:
    """Record the close once: the export row, the `closed` event and `closed_at`.

    Not before the incident is resolved with a summary: it is the post-mortem's
    Resolution, and nobody writes it later."""
    incident = store.by_channel(session, channel_id, for_update=True)
    if incident is None:
        raise UserError(NOT_AN_INCIDENT_CHANNEL)
    existing = row_for(session, incident.id)
    if existing is not None:
        return CloseStart(incident.id, closed_before=incident.closed_at or existing.created_at)
    resolved = incident.status == "resolved"
    if not resolved or not incident.resolution_summary:
        return CloseStart(incident.id, needs_resolution=True, resolved=resolved)
    try:
        with session.begin_nested():
            session.add(
                Postmortem(
                    incident_id=incident.id,
                    status=PENDING_EXPORT,
                    markdown="",
                    document={},
                    created_at=now,
                )
            )
    except IntegrityError:  # a concurrent close (another replica) got there first
        return CloseStart(incident.id, closed_before=now)
    incident.closed_at = now
    store.append_event(session, incident, "closed", actor, now)
    return CloseStart(incident.id)


def save(session: Session, incident_id: int, values: dict[str, Any], token: int) -> None:
    """Record export progress, if the lease with `token` is still held (else `LeaseLost`)."""
    store.leased(session, incident_id, token)
    row = row_for(session, incident_id)
    assert row is not None
    for key, value in values.items():
        setattr(row, key, value)


def pending_exports(session: Session) -> list[int]:
    query = select(Postmortem.incident_id).where(Postmortem.status == PENDING_EXPORT)
    return list(session.scalars(query.order_by(Postmortem.id)))
