"""Fenced leases on a row: an incident's (its declare saga, its export) and its triage's.

A holder takes a lease when it is free or lapsed, which raises the row's fencing
token; it renews it while it works, and every write it guards carries the token
(`held`), so the writes of a holder that stalled past its lease are refused. The
rows are named by their key column (`Incident.id`, `Triage.incident_id`), whose
table has `lease_owner`, `lease_until` and `lease_token`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session


class LeaseLost(Exception):
    """A write guarded by an incident's lease came from a holder that no longer has it."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"the lease on incident {incident_id} passed to another holder")
        self.incident_id = incident_id


def acquire(
    session: Session,
    key: InstrumentedAttribute[int],
    incident_id: int,
    owner: str,
    now: datetime,
    ttl: timedelta,
) -> int | None:
    """Take the row's lease if it is free or lapsed; returns the new fencing token."""
    table = key.class_
    result = session.execute(
        update(table)
        .where(key == incident_id, or_(table.lease_until.is_(None), table.lease_until < now))
        .values(lease_owner=owner, lease_until=now + ttl, lease_token=table.lease_token + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    token = session.scalar(select(table.lease_token).where(key == incident_id))
    return int(token) if token is not None else None


def renew(
    session: Session,
    key: InstrumentedAttribute[int],
    incident_id: int,
    token: int,
    now: datetime,
    ttl: timedelta,
) -> bool:
    """Extend the lease; False if another holder has taken it since (a newer token)."""
    table = key.class_
    result = session.execute(
        update(table)
        .where(key == incident_id, table.lease_token == token)
        .values(lease_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release(
    session: Session, key: InstrumentedAttribute[int], incident_id: int, token: int
) -> None:
    table = key.class_
    session.execute(
        update(table)
        .where(key == incident_id, table.lease_token == token)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def held(session: Session, key: InstrumentedAttribute[int], incident_id: int, token: int) -> Any:
    """The row, locked, for a write guarded by the lease with `token`.

    Raises `LeaseLost` when another holder has taken the lease since: the row lock
    makes a concurrent takeover wait until this write commits, and any later write
    of the old holder fails here.
    """
    table = key.class_
    row = session.scalar(
        select(table).where(key == incident_id, table.lease_token == token).with_for_update()
    )
    if row is None:
        raise LeaseLost(incident_id)
    return row
