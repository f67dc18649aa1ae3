"""Queries on the inbox of acked Slack requests, and pruning of idempotency keys.

A request is claimed with a conditional UPDATE (unclaimed, or its claim lapsed),
which is atomic on SQLite and Postgres alike; on Postgres the candidate rows
are first selected `FOR UPDATE SKIP LOCKED`, so workers polling together take
different rows instead of queueing on the same ones. Each claim raises the
row's `claim_token`; renewing and finishing require it, so a worker whose
claim lapsed and was taken over cannot delete the new holder's row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from storage.models import HandledRequest, InboxRequest


@dataclass(frozen=True)
class Claimed:
    """A request a worker holds: replay `body`, then finish with `token`."""

    id: int
    token: int
    body: str
    content_type: str
    received_at: datetime
    attempts: int


@dataclass(frozen=True)
class Arrival:
    """A request as it arrived: what a worker needs to replay it."""

    body: str
    content_type: str
    received_at: datetime


def add(
    session: Session,
    arrivals: Sequence[Arrival],
    *,
    owner: str | None = None,
    claimed_until: datetime | None = None,
) -> list[Claimed]:
    """Store acked requests (one INSERT for them all); with `owner`, already claimed by it
    until `claimed_until`."""
    rows = [
        InboxRequest(
            body=arrival.body,
            content_type=arrival.content_type,
            received_at=arrival.received_at,
            attempts=1 if owner else 0,
            claimed_by=owner,
            claimed_until=claimed_until if owner else None,
            claim_token=1 if owner else 0,
        )
        for arrival in arrivals
    ]
    session.add_all(rows)
    session.flush()
    return [
        Claimed(r.id, r.claim_token, r.body, r.content_type, r.received_at, r.attempts)
        for r in rows
    ]


def claim(session: Session, owner: str, now: datetime, ttl: timedelta, limit: int) -> list[Claimed]:
    """Claim up to `limit` requests that nobody holds, oldest first."""
    free = or_(InboxRequest.claimed_until.is_(None), InboxRequest.claimed_until < now)
    candidates = session.scalars(
        select(InboxRequest)
        .where(free)
        .order_by(InboxRequest.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for row in candidates:
        result = session.execute(
            update(InboxRequest)
            .where(InboxRequest.id == row.id, InboxRequest.claim_token == row.claim_token, free)
            .values(
                claimed_by=owner,
                claimed_until=now + ttl,
                claim_token=row.claim_token + 1,
                attempts=row.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(
                Claimed(
                    row.id,
                    row.claim_token + 1,
                    row.body,
                    row.content_type,
                    row.received_at,
                    row.attempts + 1,
                )
            )
    return claimed


def renew(session: Session, request_id: int, token: int, now: datetime, ttl: timedelta) -> bool:
    """Extend a claim; False if another worker has taken the request over."""
    result = session.execute(
        update(InboxRequest)
        .where(InboxRequest.id == request_id, InboxRequest.claim_token == token)
        .values(claimed_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(session: Session, request_id: int, token: int) -> bool:
    """Delete a handled request; False if the claim was lost to another worker."""
    result = session.execute(
        delete(InboxRequest)
        .where(InboxRequest.id == request_id, InboxRequest.claim_token == token)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def waiting(session: Session) -> int:
    """Requests not yet handled (claimed or not)."""
    return int(session.scalar(select(func.count()).select_from(InboxRequest)) or 0)


def prune_handled(session: Session, keep_after: datetime) -> int:
    """Forget idempotency keys from before `keep_after`, and before any unhandled request.

    A redelivery by Slack comes within minutes; a request still in the inbox
    may be replayed much later, so its keys must outlive it.
    """
    oldest = session.scalar(select(func.min(InboxRequest.received_at)))
    cutoff = min(keep_after, oldest) if oldest is not None else keep_after
    result = session.execute(
        delete(HandledRequest)
        .where(HandledRequest.at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
