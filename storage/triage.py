"""Queries on the triage of an incident (see `Triage`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage import leases
from storage.models import Incident, OutboxMessage, Triage

DONE = "done"


def add(
    session: Session,
    incident_id: int,
    scenario: str | None,
    service: str | None,
    reasons: list[str],
) -> Triage:
    triage = Triage(
        incident_id=incident_id,
        scenario=scenario,
        service=service,
        reasons=reasons,
        round=1,
        state="guess",
        results=[],
    )
    session.add(triage)
    return triage


def get(session: Session, incident_id: int, *, for_update: bool = False) -> Triage | None:
    query = select(Triage).where(Triage.incident_id == incident_id)
    return session.scalar(query.with_for_update() if for_update else query)


def advance(
    session: Session, incident_id: int, round_: int, from_state: str, to_state: str, **values: Any
) -> bool:
    """Move one step on, only if the row is still at `from_state` of `round_`: False when
    another run did it already or a switch started a new round."""
    result = session.execute(
        update(Triage)
        .where(
            Triage.incident_id == incident_id,
            Triage.round == round_,
            Triage.state == from_state,
        )
        .values(state=to_state, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def restart(triage: Triage, scenario: str, service: str | None, by: str) -> None:
    """A new round for a switched scenario: announced again, diagnosed again."""
    triage.scenario, triage.service, triage.reasons = scenario, service, []
    triage.round, triage.switched_by = triage.round + 1, by
    triage.state, triage.digest_outbox_id, triage.results = "guess", None, []


def posted(session: Session, outbox_id: int) -> tuple[str | None, bool]:
    """The ts of an outbox row once delivered, and whether it was given up (then it
    never will be)."""
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        return None, True
    return (row.delivered_ts if row.delivered_at else None), row.failed_at is not None


def unfinished(session: Session) -> list[int]:
    """The incidents whose triage has a step left, once their declare saga is complete
    (answering the declarer is its last step): the triage runs after it."""
    query = (
        select(Triage.incident_id)
        .join(Incident, Incident.id == Triage.incident_id)
        .where(Triage.state != DONE, Incident.declarer_answered.is_(True))
    )
    return list(session.scalars(query))


def acquire_lease(
    session: Session, incident_id: int, owner: str, now: datetime, ttl: timedelta
) -> int | None:
    """Take the triage's lease if it is free or lapsed; returns the new fencing token."""
    return leases.acquire(session, Triage.incident_id, incident_id, owner, now, ttl)


def renew_lease(
    session: Session, incident_id: int, token: int, now: datetime, ttl: timedelta
) -> bool:
    return leases.renew(session, Triage.incident_id, incident_id, token, now, ttl)


def release_lease(session: Session, incident_id: int, token: int) -> None:
    leases.release(session, Triage.incident_id, incident_id, token)


def leased(session: Session, incident_id: int, token: int) -> Triage:
    """The triage, locked, for a write guarded by its lease with `token` (else
    `LeaseLost`)."""
    triage: Triage = leases.held(session, Triage.incident_id, incident_id, token)
    return triage


def set_digest(session: Session, incident_id: int, outbox_id: int) -> None:
    session.execute(
        update(Triage)
        .where(Triage.incident_id == incident_id)
        .values(digest_outbox_id=outbox_id)
        .execution_options(synchronize_session=False)
    )
