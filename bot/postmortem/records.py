"""What closing an incident records, and how a post-mortem finds its incident.

Plain functions taking the session first, run through Database.run; the
queries are storage's (storage/postmortems.py keeps the export record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.incidents.outbox import MARKER_PREFIX
from bot.postmortem.room import STALE_AFTER, Listening
from storage import incidents as store
from storage import outbox, room
from storage import postmortems as exports
from storage.models import Event, Incident, Postmortem


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
        incident = store.by_channel_name(session, ref)
    return None if incident is None else incident.id


def load(session: Session, incident_id: int) -> tuple[Incident, list[Event], Postmortem | None]:
    incident = store.get(session, incident_id)
    assert incident is not None
    events = room.log_events(session, incident_id)  # the channel's own: `listening`
    return incident, events, exports.row_for(session, incident_id)


def listening(session: Session, incident_id: int, now: datetime) -> Listening:
    """What the log holds of the channel: the recorded events, when Firebreak listened,
    and where its own messages are."""
    incident = store.get(session, incident_id)
    assert incident is not None
    until = incident.closed_at or now
    # A span last seen shortly before the declaration may be one still running.
    spans = room.spans(session, incident.declared_at - STALE_AFTER, until)
    delivered = outbox.delivered_ts(session, incident_id)
    own = {f"{MARKER_PREFIX}{row_id}": ts for row_id, ts in delivered}
    return Listening(spans, room.recorded(session, incident_id), own)


def begin_close(session: Session, channel_id: str, actor: str, now: datetime) -> CloseStart:
    """Record the close once: the export row, the `closed` event and `closed_at`.

    Not before the incident is resolved with a summary: it is the post-mortem's
    Resolution, and nobody writes it later."""
    incident = store.by_channel(session, channel_id, for_update=True)
    if incident is None:
        raise UserError(NOT_AN_INCIDENT_CHANNEL)
    existing = exports.row_for(session, incident.id)
    if existing is not None:
        return CloseStart(incident.id, closed_before=incident.closed_at or existing.created_at)
    resolved = incident.status == "resolved"
    if not resolved or not incident.resolution_summary:
        return CloseStart(incident.id, needs_resolution=True, resolved=resolved)
    if not exports.add_pending(session, incident.id, now):
        return CloseStart(incident.id, closed_before=now)  # another replica closed it first
    incident.closed_at = now
    store.append_event(session, incident, "closed", actor, now)
    return CloseStart(incident.id)
