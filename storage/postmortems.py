"""Post-mortem export records: one `Postmortem` row per incident (unique).

The row is written when the incident is closed, in the same transaction as the
`closed` event, and its steps (document, file written, uploaded, announced) are
filled in as they complete, so a retry does only what is missing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.incidents import leased
from storage.models import Postmortem

PENDING_EXPORT = "pending_export"
EXPORTED = "exported"


def row_for(session: Session, incident_id: int) -> Postmortem | None:
    return session.scalar(select(Postmortem).where(Postmortem.incident_id == incident_id))


def add_pending(session: Session, incident_id: int, now: datetime) -> bool:
    """Write the incident's export record; False if one exists already (a concurrent
    close on another replica got there first), and then nothing is written."""
    try:
        with session.begin_nested():
            session.add(
                Postmortem(
                    incident_id=incident_id,
                    status=PENDING_EXPORT,
                    markdown="",
                    document={},
                    created_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


def save(session: Session, incident_id: int, values: dict[str, Any], token: int) -> None:
    """Record export progress, if the lease with `token` is still held (else `LeaseLost`)."""
    leased(session, incident_id, token)
    row = row_for(session, incident_id)
    assert row is not None
    for key, value in values.items():
        setattr(row, key, value)


def pending_exports(session: Session) -> list[int]:
    query = select(Postmortem.incident_id).where(Postmortem.status == PENDING_EXPORT)
    return list(session.scalars(query.order_by(Postmortem.id)))
