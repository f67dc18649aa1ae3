"""Closed incidents stay closed; work that goes on becomes a linked follow-up incident.

A closed incident's post-mortem is exported and covers it up to the close, so
reopening it would leave a period no post-mortem covers. Instead every change
is refused with the way forward: `/incident declare` from the closed incident's
channel declares a new incident linked to it (`follow_up_of`), announced with
the link, and pointed to from the old channel.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.incidents import privacy
from bot.mrkdwn import channel_link, escape
from storage import incidents as store
from storage.models import Incident
from storage.outbox import enqueue


def refusal(incident: Incident) -> str:
    """Why a closed incident cannot change, and how to carry on."""
    assert incident.closed_at is not None
    return (
        f"Incident #{incident.id} was closed on {incident.closed_at:%Y-%m-%d %H:%M} UTC and "
        "its post-mortem covers it until then, so it can't change any more. If the work "
        "goes on, declare a follow-up from this channel, e.g. `/incident declare P2 <title>`: "
        f"Firebreak links it to #{incident.id}."
    )


def closed_incident_in(session: Session, channel_id: str) -> Incident | None:
    """The closed incident whose channel a declare came from: the new one follows it up."""
    incident = store.by_channel(session, channel_id)
    return incident if incident is not None and incident.closed_at is not None else None


def link_channels(session: Session, incident: Incident, now: datetime) -> None:
    """Once the follow-up has its channel: say so in both channels."""
    earlier = store.get(session, incident.follow_up_of) if incident.follow_up_of else None
    if earlier is None or not earlier.channel_id or not incident.channel_id:
        return
    here = channel_link(incident.channel_id, incident.channel_name)
    there = channel_link(earlier.channel_id, earlier.channel_name)
    # A private incident's title stays in its own channel, either way round.
    earlier_title = f": {escape(earlier.title)}" if privacy.broadcasts(earlier) else ""
    enqueue(
        session,
        incident.id,
        "post",
        now,
        channel=incident.channel_id,
        text=f":link: Follow-up of incident #{earlier.id} ({there}){earlier_title}",
    )
    if not privacy.broadcasts(incident):
        return
    enqueue(
        session,
        incident.id,
        "post",
        now,
        channel=earlier.channel_id,
        text=f":arrow_right_hook: Follow-up incident #{incident.id} declared: {here} "
        f"{escape(incident.title)}",
    )
