"""The transactions of a proposed mitigation: each change to a `PendingAction` with its
event in the incident log, in one transaction.

A proposal leaves `pending` once, through `storage.pending_actions.transition` (a
conditional UPDATE), so a click, a newer proposal and the incident's close can race
on any replica and exactly one of them decides it. Every function takes the session
and the time (`now`, from the service's clock) first, as `Database.run` calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.actions import views
from bot.actions.params import Invocation
from bot.errors import UserError
from bot.executors import ExecutionResult
from bot.incidents.service import Request
from storage import incidents as store
from storage import pending_actions
from storage.models import PendingAction
from storage.outbox import enqueue

EXPIRY = timedelta(minutes=10)
# The proposal's status after a confirmed run, by outcome.
STATUS_OF = {
    "ok": "executed",
    "failed": "failed",
    "unavailable": "failed",
    "changed": "changed",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class Settled:
    """How a click (or a newer proposal, or the close) ended, with the row as it is now."""

    # confirmed, cancelled, expired, closed, superseded, already_decided, a refusal,
    # or duplicate
    outcome: str
    pending: PendingAction
    channel_id: str


@dataclass(frozen=True)
class IncidentView:
    """What deciding a click needs to know about the incident."""

    commander: str | None
    severity: str
    closed: bool


def about(invocation: Invocation) -> dict[str, Any]:
    """What every action event names: the action, the service and the whole command
    with its parameters, so the audit trail reads without the runbooks at hand."""
    return {
        "action": invocation.action.name,
        "service": invocation.target.name,
        "command": invocation.command(),
    }


def about_pending(pending: PendingAction) -> dict[str, Any]:
    return {
        "action_id": pending.id,
        "action": pending.action,
        "service": pending.service,
        "command": views.command_words(pending),
    }


def outcome_of(result: ExecutionResult, error: bool) -> str:
    """ok, failed, unavailable, changed (since the dry run: nothing ran) or unknown
    (a write that may still complete)."""
    if result.unknown:
        return "unknown"
    if result.details.get("changed"):
        return "changed"
    if error:
        return "unavailable"
    return "ok" if result.ok else "failed"


def log(
    session: Session, now: datetime, incident_id: int, event: str, actor: str, **payload: Any
) -> None:
    incident = store.get(session, incident_id)
    if incident is not None:
        store.append_event(session, incident, event, actor, now, **payload)


def load(session: Session, action_id: int) -> tuple[PendingAction, IncidentView] | None:
    pending = pending_actions.get(session, action_id)
    if pending is None:
        return None
    incident = store.get(session, pending.incident_id)
    if incident is None:
        return None
    view = IncidentView(
        incident.role("commander"), incident.severity, incident.closed_at is not None
    )
    return pending, view


def save_message_ts(session: Session, action_id: int, ts: str) -> None:
    pending = pending_actions.get(session, action_id)
    if pending is not None:
        pending.message_ts = ts


def add_pending(
    session: Session,
    now: datetime,
    incident_id: int,
    invocation: Invocation,
    actor: str,
    dry: ExecutionResult,
) -> tuple[PendingAction, list[PendingAction]]:
    """The new proposal, pinning what its dry run resolved, and the older ones for the
    same action and service that it supersedes (each with its event). Refused when the
    incident closed while the dry run ran."""
    incident = store.get(session, incident_id, for_update=True)
    if incident is None or incident.closed_at is not None:
        raise UserError(views.INCIDENT_CLOSED)
    pinned = dry.details.get("pinned")
    older = pending_actions.open_proposals(
        session, incident_id, invocation.action.name, invocation.target.name
    )
    pending = PendingAction(
        incident_id=incident_id,
        action=invocation.action.name,
        service=invocation.target.name,
        params=dict(invocation.args),
        requested_by=actor,
        requested_at=now,
        expires_at=now + EXPIRY,
        status="pending",
        dry_run=f"{' '.join(dry.summary.split())}\n{dry.output}",
        pinned=dict(pinned) if isinstance(pinned, dict) else {},
    )
    pending_actions.add(session, pending)
    payload = {**about(invocation), "action_id": pending.id, "summary": dry.summary}
    store.append_event(session, incident, "mitigation_dry_run", actor, now, ok=True, **payload)
    superseded = []
    for old in older:
        if pending_actions.transition(session, old.id, "superseded", actor, now):
            newer = {"by_action_id": pending.id, "by_command": invocation.command()}
            event = "mitigation_superseded"
            store.append_event(session, incident, event, actor, now, **about_pending(old), **newer)
            session.refresh(old)
            superseded.append(old)
    return pending, superseded


def retire(session: Session, now: datetime, incident_id: int, actor: str) -> list[Settled]:
    """Retire the incident's open proposals (at close), each with its event."""
    incident = store.get(session, incident_id)
    assert incident is not None
    retired = []
    for pending in pending_actions.open_proposals(session, incident_id):
        if pending_actions.transition(session, pending.id, "retired", actor, now):
            why = {**about_pending(pending), "reason": "closed"}
            store.append_event(session, incident, "mitigation_retired", actor, now, **why)
            session.refresh(pending)
            retired.append(Settled("closed", pending, incident.channel_id or ""))
    return retired


def settle(
    session: Session,
    now: datetime,
    action_id: int,
    request: Request,
    confirm: bool,
    refusal: str | None,
) -> Settled:
    """Count the click once: a conditional UPDATE from `pending` decides it."""
    pending = pending_actions.get(session, action_id)
    assert pending is not None  # rows are never deleted while their incident lives
    incident = store.get(session, pending.incident_id)
    assert incident is not None and incident.channel_id
    facts: dict[str, object] = about_pending(pending)
    if not store.claim_request(session, request.key, now):
        return Settled("duplicate", pending, incident.channel_id)
    if pending.status != "pending":
        outcome = "already_decided"
    elif incident.closed_at is not None:
        won = pending_actions.transition(session, action_id, "retired", None, now)
        if won:
            why = {**facts, "reason": "closed"}
            store.append_event(session, incident, "mitigation_retired", "firebreak", now, **why)
        outcome = "closed" if won else "already_decided"
    elif now >= pending.expires_at:
        won = pending_actions.transition(session, action_id, "expired", None, now)
        outcome = "expired" if won else "already_decided"
    elif refusal is not None:
        outcome = refusal
    else:
        status = "confirmed" if confirm else "cancelled"
        if pending_actions.transition(session, action_id, status, request.actor, now):
            event = "mitigation_confirmed" if confirm else "mitigation_cancelled"
            facts["requested_by"] = pending.requested_by
            store.append_event(session, incident, event, request.actor, now, **facts)
            session.refresh(pending)
            return Settled(status, pending, incident.channel_id)
        outcome = "already_decided"
    facts |= {"reason": outcome, "confirm": confirm}
    store.append_event(session, incident, "mitigation_refused", request.actor, now, **facts)
    session.refresh(pending)
    return Settled(outcome, pending, incident.channel_id)


def finish(
    session: Session,
    now: datetime,
    settled: Settled,
    actor: str,
    invocation: Invocation,
    result: ExecutionResult,
    outcome: str,
) -> None:
    """Record the run, its event, and the result reply in the proposal's thread."""
    pending = pending_actions.get(session, settled.pending.id)
    assert pending is not None
    pending.status, pending.result = STATUS_OF[outcome], result.summary
    payload = {**about(invocation), "action_id": pending.id, "summary": result.summary}
    log(
        session,
        now,
        pending.incident_id,
        "mitigation_executed",
        actor,
        ok=outcome == "ok",
        outcome=outcome,
        **payload,
    )
    text = views.outcome(invocation.command(), actor, result, outcome)
    channel, thread = settled.channel_id, pending.message_ts
    enqueue(session, pending.incident_id, "post", now, channel=channel, text=text, thread_ts=thread)
