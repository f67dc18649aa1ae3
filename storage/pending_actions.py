"""Queries on proposed mitigations (`PendingAction` rows).

A proposal leaves `pending` exactly once, through a conditional UPDATE, so two
clicks, a click and a newer proposal, or a click and the incident's close, can
never both win, on one replica or several.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import PendingAction


def get(session: Session, action_id: int) -> PendingAction | None:
    return session.get(PendingAction, action_id)


def add(session: Session, pending: PendingAction) -> PendingAction:
    """Insert a proposal and give it its ID (the event about it names it)."""
    session.add(pending)
    session.flush()
    return pending


def transition(
    session: Session, action_id: int, status: str, actor: str | None, now: datetime
) -> bool:
    """pending → `status`, only if still pending: exactly one concurrent caller wins."""
    result = session.execute(
        update(PendingAction)
        .where(PendingAction.id == action_id, PendingAction.status == "pending")
        .values(status=status, decided_by=actor, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def open_proposals(
    session: Session, incident_id: int, action: str | None = None, service: str | None = None
) -> list[PendingAction]:
    """The incident's proposals still waiting for a decision, oldest first; only those
    for `action` on `service` when given."""
    query = select(PendingAction).where(
        PendingAction.incident_id == incident_id, PendingAction.status == "pending"
    )
    if action is not None:
        query = query.where(PendingAction.action == action)
    if service is not None:
        query = query.where(PendingAction.service == service)
    return list(session.scalars(query.order_by(PendingAction.id)))
