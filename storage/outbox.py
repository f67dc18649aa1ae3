"""Queries on the outbox of messages owed (see `OutboxMessage`).

Order is kept per destination: a row may be claimed only while no earlier row
to its destination is unsettled (neither delivered nor failed). The rule is in
the claiming UPDATE itself, so it holds across tasks and replicas.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from storage.models import Event, Incident, OutboxMessage

# A destination is "<system>:<lane>": the system sends it (see `system_of`), the lane
# keeps its order. Slack's lanes are channels; the calls to PagerDuty or Statuspage
# (bot/paging/delivery.py) are laned per incident, and their `channel` names the system.
SLACK = "slack"


def slack_destination(channel: str) -> str:
    """The ordering key of everything sent into one Slack channel (an ID or a name)."""
    return f"{SLACK}:{channel}"


def system_of(destination: str) -> str:
    """The system whose sender delivers a destination's rows."""
    return destination.partition(":")[0]


def _to(*systems: str) -> ColumnElement[bool]:
    return or_(*(OutboxMessage.destination.startswith(f"{system}:") for system in systems))


def enqueue(
    session: Session,
    incident_id: int,
    kind: str,
    now: datetime,
    *,
    channel: str = "",
    text: str = "",
    thread_ts: str | None = None,
    collapse_key: str | None = None,
    destination: str | None = None,
) -> OutboxMessage:
    """Queue a row; a refresh or invite (no `channel`) goes to the incident's channel.
    `destination` orders the rows of one lane: by default, the Slack channel's."""
    if not channel and kind in ("topic", "checklist", "invite"):
        incident = session.get(Incident, incident_id)
        channel = (incident.channel_id if incident else None) or ""
    message = OutboxMessage(
        incident_id=incident_id,
        kind=kind,
        destination=destination or slack_destination(channel),
        channel=channel,
        text=text,
        thread_ts=thread_ts,
        collapse_key=collapse_key,
        created_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    session.add(message)
    session.info.setdefault(_QUEUED, []).append(message)
    return message


def queued_in(session: Session, system: str = SLACK) -> list[int]:
    """The IDs of the rows this transaction queued for `system`: what the change it
    makes owes there (by default, its Slack messages)."""
    rows = session.info.get(_QUEUED, [])
    session.flush()
    return [row.id for row in rows if system_of(row.destination) == system]


_QUEUED = "firebreak.outbox.queued"  # session.info key: rows enqueued in the transaction
SUPERSEDED = "superseded"  # the reason of a row given up for a newer one (collapse_key)
# The reason of a row kept from a private incident's broadcast (bot/incidents/privacy.py):
# not a failure to report, like a superseded row.
WITHHELD = "withheld"


def _unsettled() -> list[ColumnElement[bool]]:
    return [OutboxMessage.delivered_at.is_(None), OutboxMessage.failed_at.is_(None)]


def outbox_rows(session: Session, incident_id: int) -> list[int]:
    """Every row ever queued for the incident (what a declare owes, for its reply)."""
    query = select(OutboxMessage.id).where(OutboxMessage.incident_id == incident_id, _to(SLACK))
    return list(session.scalars(query))


def due(
    session: Session, now: datetime, incident_id: int | None, systems: Collection[str]
) -> list[OutboxMessage]:
    """The rows of `systems` that may be sent now, by destination and then in order.

    For each destination (those `incident_id` has unsettled rows in, or all), its
    unsettled rows oldest first, up to the first that is being sent by someone else
    or waiting out its backoff: nothing behind such a row may overtake it. A delivery
    for one incident takes its own rows and those ahead of them, not the other
    incidents' rows behind (their own deliveries and the sweep send those), and
    retries the Slack rows ahead at once, so a message is not held back by the
    backoff of one queued before it while Slack was failing; a call to another
    system waits out its backoff even so, so a system that is down is not called
    again on every command.
    """
    query = select(OutboxMessage).where(*_unsettled(), _to(*systems))
    if incident_id is not None:
        mine = select(OutboxMessage.destination).where(
            OutboxMessage.incident_id == incident_id, *_unsettled()
        )
        query = query.where(OutboxMessage.destination.in_(mine))
    rows = session.scalars(query.order_by(OutboxMessage.destination, OutboxMessage.id).limit(500))
    ready: list[OutboxMessage] = []
    stopped: set[str] = set()
    for row in rows:
        if row.destination in stopped:
            continue
        held = row.claimed_until is not None and row.claimed_until >= now
        at_once = incident_id is not None and system_of(row.destination) == SLACK
        if held or (row.next_attempt_at > now and not at_once):
            stopped.add(row.destination)
            continue
        ready.append(row)
    if incident_id is None:
        return ready
    last = {row.destination: i for i, row in enumerate(ready) if row.incident_id == incident_id}
    return [row for i, row in enumerate(ready) if i <= last.get(row.destination, -1)]


def claim(session: Session, message_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take a row for delivery; False if someone holds it, it is settled, or an earlier
    row to its destination is not settled yet (order per destination)."""
    earlier = aliased(OutboxMessage)
    ahead = exists().where(
        earlier.destination == OutboxMessage.destination,
        earlier.id < OutboxMessage.id,
        earlier.delivered_at.is_(None),
        earlier.failed_at.is_(None),
    )
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            *_unsettled(),
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
            ~ahead,
        )
        .values(claimed_by=holder, claimed_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def renew(session: Session, message_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend `holder`'s claim; False if it has lost it (taken over after it lapsed)."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.claimed_by == holder,
            *_unsettled(),
        )
        .values(claimed_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def delivered(session: Session, message_id: int, ts: str | None, now: datetime) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(delivered_at=now, delivered_ts=ts, claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def resend_dropped_cards(session: Session, now: datetime, window: timedelta) -> int:
    """Queue again the `card` rows marked delivered without a message `ts` in the last
    `window`: a replica of a release before migration 0011 does not know the kind and
    marks such a row done without sending it (during a rolling update), while a card
    that was sent always has its ts. The marker lookup on a resend keeps it single."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.kind == "card",
            OutboxMessage.delivered_at >= now - window,
            OutboxMessage.delivered_ts.is_(None),
        )
        .values(delivered_at=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def retry_later(session: Session, message_id: int, error: str, retry_at: datetime) -> None:
    """A transient failure: release the row, to be tried again at `retry_at`."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=error[:255],
            next_attempt_at=retry_at,
            claimed_by=None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def give_up(session: Session, message_id: int, reason: str, now: datetime) -> None:
    """A permanent failure (or a superseded row): never send it, and say why."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=reason[:255],
            failed_at=now,
            claimed_by=None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def superseded(session: Session, row: OutboxMessage) -> bool:
    """Whether a newer unsettled row with the same collapse key waits for the destination."""
    if row.collapse_key is None:
        return False
    newer = select(OutboxMessage.id).where(
        OutboxMessage.destination == row.destination,
        OutboxMessage.incident_id == row.incident_id,
        OutboxMessage.collapse_key == row.collapse_key,
        OutboxMessage.id > row.id,
        *_unsettled(),
    )
    return session.scalar(newer.limit(1)) is not None


def failed_before(
    session: Session, incident_id: int, event_type: str, destination: str, reason: str
) -> bool:
    """Whether an `event_type` event of the incident already names this destination and
    reason (so it was reported then, and is not reported again)."""
    payloads = session.scalars(
        select(Event.payload).where(Event.incident_id == incident_id, Event.type == event_type)
    )
    return any(p.get("destination") == destination and p.get("reason") == reason for p in payloads)


@dataclass(frozen=True)
class RowState:
    """Where one row stands, for the answer to whoever queued it."""

    id: int
    destination: str
    channel: str
    kind: str
    # delivered | failed | superseded | sending (held, or behind a held row) |
    # waiting (itself or the row ahead is in backoff) | ready (may be sent now)
    status: str
    error: str | None  # the reason (failed), or the last error of the row it waits on


def states(session: Session, row_ids: list[int], now: datetime) -> list[RowState]:
    rows = list(
        session.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_(row_ids)).order_by(OutboxMessage.id)
        )
    )
    result = []
    for row in rows:
        if row.delivered_at is not None:
            status, error = "delivered", None
        elif row.failed_at is not None:
            reason = row.last_error or "unknown_error"
            status = reason if reason in (SUPERSEDED, WITHHELD) else "failed"
            error = reason
        else:
            head = session.scalar(
                select(OutboxMessage)
                .where(
                    OutboxMessage.destination == row.destination,
                    OutboxMessage.id <= row.id,
                    *_unsettled(),
                )
                .order_by(OutboxMessage.id)
                .limit(1)
            )
            head = head or row
            if head.claimed_until is not None and head.claimed_until >= now:
                status = "sending"
            elif head.next_attempt_at > now:
                status = "waiting"
            else:
                status = "ready"
            error = head.last_error
        result.append(RowState(row.id, row.destination, row.channel, row.kind, status, error))
    return result


def delivered_ts(session: Session, incident_id: int) -> list[tuple[int, str]]:
    """(row id, message ts) of the incident's messages Slack took."""
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.delivered_ts).where(
            OutboxMessage.incident_id == incident_id, OutboxMessage.delivered_ts.is_not(None)
        )
    )
    return [(row_id, str(ts)) for row_id, ts in rows]
