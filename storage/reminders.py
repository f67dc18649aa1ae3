"""Queries behind status-update nudges: the schedule, and claiming a send.

The due time lives on the incident row. A replica claims a send with a
conditional UPDATE (due, and not claimed by anyone whose claim is still
live), so on one Postgres several replicas send each nudge exactly once;
the same statement is atomic on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage.models import Incident


def schedule(session: Session) -> dict[int, datetime]:
    """Next due time of every incident that has one."""
    rows = session.execute(
        select(Incident.id, Incident.next_update_due_at).where(
            Incident.next_update_due_at.is_not(None), Incident.status != "resolved"
        )
    )
    return {incident_id: due for incident_id, due in rows if due is not None}


def due_ids(session: Session, now: datetime) -> list[int]:
    query = select(Incident.id).where(
        Incident.next_update_due_at <= now,
        Incident.status != "resolved",
        # Nothing to nudge until the declare saga has made the channel.
        Incident.channel_id.is_not(None),
        or_(Incident.nudge_claimed_until.is_(None), Incident.nudge_claimed_until < now),
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Claim:
    due_at: datetime
    version: int  # the schedule version the send read; it reschedules only from this
    # A previous send may have reached Slack (its holder died or stalled, or its post
    # failed without an answer): look in Slack before posting again.
    lapsed: bool
    token: int  # fences the holder's writes (`held`): a stalled holder cannot record late


def claim(
    session: Session, incident_id: int, owner: str, now: datetime, ttl: timedelta
) -> Claim | None:
    """Claim the due nudge, or None when it is not due or another replica has it.

    A lapsed claim means a replica died (or stalled) between claiming and
    recording the send: the caller looks for that nudge in Slack before posting
    it again. The fencing token guards the caller's writes (`held`), so a
    stalled holder that wakes up cannot record the send a second time.
    """
    incident = session.get(Incident, incident_id)
    if incident is None or incident.next_update_due_at is None:
        return None
    # A claim left held, or released with a retry time after a failed post: either way
    # Slack may have the reminder. A recorded or answered send clears both.
    lapsed = incident.nudge_claimed_by is not None or incident.nudge_claimed_until is not None
    result = session.execute(
        update(Incident)
        .where(
            Incident.id == incident_id,
            Incident.reminder_version == incident.reminder_version,
            Incident.next_update_due_at <= now,
            Incident.status != "resolved",
            Incident.channel_id.is_not(None),
            or_(
                Incident.nudge_claimed_until.is_(None),
                Incident.nudge_claimed_until < now,
            ),
        )
        .values(
            nudge_claimed_by=owner,
            nudge_claimed_until=now + ttl,
            nudge_claim_token=Incident.nudge_claim_token + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    token = session.scalar(select(Incident.nudge_claim_token).where(Incident.id == incident_id))
    return Claim(incident.next_update_due_at, incident.reminder_version, lapsed, int(token or 0))


def reschedule(session: Session, incident_id: int, version: int, due: datetime | None) -> bool:
    """Compare-and-set: the next due time becomes `due` and the claim is freed, only if
    the schedule is still at `version`. False when a command (a snooze, an update, a
    severity change) re-timed it meanwhile: its time stands."""
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident_id, Incident.reminder_version == version)
        .values(
            next_update_due_at=due,
            reminder_version=version + 1,
            snoozed_until=None,
            nudge_claimed_by=None,
            nudge_claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def held(session: Session, incident_id: int, token: int) -> Incident | None:
    """The incident, locked, if the nudge claim with `token` is still the latest one."""
    return session.scalar(
        select(Incident)
        .where(Incident.id == incident_id, Incident.nudge_claim_token == token)
        .with_for_update()
    )


def release(session: Session, incident_id: int, token: int, retry_at: datetime | None) -> None:
    """Give up a claim; with `retry_at`, nobody retries before then (backoff)."""
    session.execute(
        update(Incident)
        .where(Incident.id == incident_id, Incident.nudge_claim_token == token)
        .values(nudge_claimed_by=None, nudge_claimed_until=retry_at)
        .execution_options(synchronize_session=False)
    )
