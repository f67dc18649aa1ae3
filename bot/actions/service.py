"""Runbook actions in an incident: diagnostics run at once, mitigations after a confirmed dry run.

Every step is an event in the incident log (requested, dry run, confirmed,
refused, cancelled, result), written in the transaction that claims the
request's idempotency key, so a redelivered command or click does nothing twice.
A mitigation is a `PendingAction`: its Confirm button carries the row's ID and a
conditional UPDATE from `pending` makes one click, on one replica, win. Executor
calls run under a timeout and every failure becomes a message and an event, never
an exception in the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot import commands as c
from bot.actions import views
from bot.actions.catalog import ActionCatalog
from bot.actions.params import Executors, Invocation, Value, resolve
from bot.clock import Clock
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.executors import ExecutionResult
from bot.gateway import ChatError, ChatGateway
from bot.incidents import followup
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.metrics import Metrics
from bot.mrkdwn import escape
from bot.runbooks import Runbooks
from storage import incidents as store
from storage.db import Database
from storage.models import PendingAction
from storage.outbox import enqueue

log = logging.getLogger(__name__)

EXPIRY = timedelta(minutes=10)


@dataclass(frozen=True)
class _Settled:
    """How a click ended, with the row as it is now."""

    outcome: str  # confirmed, cancelled, expired, already_decided, a refusal, or duplicate
    pending: PendingAction
    channel_id: str


class ActionService:
    def __init__(
        self,
        *,
        db: Database,
        chat: ChatGateway,
        runbooks: Runbooks,
        clock: Clock,
        catalog: ActionCatalog,
        executors: Executors,
        outbox: Outbox,
        metrics: Metrics,
        timeout: float = 45.0,
    ) -> None:
        self._db = db
        self._chat = chat
        self._runbooks = runbooks
        self._clock = clock
        self._catalog = catalog
        self._executors = executors
        self._outbox = outbox
        self._metrics = metrics
        self._timeout = timeout

    # Diagnostics -------------------------------------------------------------------

    async def diagnose(self, command: c.RunDiagnostic, request: Request) -> str:
        """List the diagnostics, or run one and show its result in the channel."""
        if command.action is None:
            return views.action_list(self._catalog, "diagnostic")
        try:
            invocation = resolve(
                self._catalog, "diagnostic", command.action, command.service or "", command.args
            )
            started = await self._db.run(self._start, request, "diagnostic_requested", invocation)
        except UserError as exc:
            return str(exc)
        if started is None:  # a redelivery of a request already handled
            return ""
        incident_id, channel = started
        result, error = await self._run(invocation, dry_run=False)
        name = invocation.command()
        thread_ts, reply = None, ""
        try:
            thread_ts = await self._show(channel, invocation, request.actor, result, error)
        except ChatError as exc:
            reply = views.not_shown(name, result.summary, exc.code)
        payload = {**_about(invocation), "summary": result.summary, "thread_ts": thread_ts}
        ok = result.ok and not error
        await self._db.run(self._log, incident_id, "diagnostic", request.actor, ok=ok, **payload)
        return reply

    async def _show(
        self, channel: str, invocation: Invocation, actor: str, result: ExecutionResult, error: bool
    ) -> str:
        """Summary in the channel, output in its thread (the full text as a file if cut)."""
        name = invocation.command()
        summary = views.diagnostic_summary(name, actor, result, error)
        ts = await self._chat.post(channel, summary.text, summary.blocks)
        if result.output and not error:
            output = views.output_message(name, result.output)
            await self._chat.post(channel, output.text, output.blocks, thread_ts=ts)
            if output.truncated:
                about = f"{invocation.action.name}-{invocation.target.name}"
                await self._chat.upload_file(
                    channel,
                    f"{about}-{self._clock.now():%Y%m%d-%H%M%S}.txt",
                    result.output,
                    title=f"Output of {escape(name)}",
                    thread_ts=ts,
                )
        return ts

    async def _run(self, invocation: Invocation, *, dry_run: bool) -> tuple[ExecutionResult, bool]:
        """Run through the executors, counted by action, kind and result."""
        result, error = await self._executors.run(
            invocation, dry_run=dry_run, timeout=self._timeout
        )
        kind = "dry_run" if dry_run else invocation.action.kind
        outcome = "unavailable" if error else ("ok" if result.ok else "failed")
        self._metrics.runbook_actions.labels(invocation.action.name, kind, outcome).inc()
        return result, error

    # Mitigations -------------------------------------------------------------------

    async def propose(self, command: c.RequestMitigation, request: Request) -> str:
        """List the mitigations, or dry-run one and post it with Confirm and Cancel."""
        if command.action is None:
            return views.action_list(self._catalog, "mitigation")
        try:
            invocation = resolve(
                self._catalog, "mitigation", command.action, command.service or "", command.args
            )
            started = await self._db.run(self._start, request, "mitigation_requested", invocation)
        except UserError as exc:
            return str(exc)
        if started is None:
            return ""
        incident_id, channel = started
        dry, error = await self._run(invocation, dry_run=True)
        if error or not dry.ok:
            payload = {**_about(invocation), "summary": dry.summary}
            await self._db.run(
                self._log, incident_id, "mitigation_dry_run", request.actor, ok=False, **payload
            )
            return views.dry_run_failed(invocation.command(), dry.summary)
        pending = await self._db.run(self._add_pending, incident_id, invocation, request.actor, dry)
        message = views.proposal(self._proposal(pending, invocation))
        try:
            ts = await self._chat.post(channel, message.text, message.blocks)
        except ChatError as exc:
            return f":warning: Slack refused the confirmation message (`{exc.code}`); ask again."
        await self._db.run(_save_message_ts, pending.id, ts)
        return ""

    async def decide(self, action_id: int, confirm: bool, request: Request) -> str:
        """A Confirm or Cancel click: authorise, count it once, then run or close it."""
        loaded = await self._db.run(_load, action_id)
        if loaded is None:
            return "That mitigation no longer exists."
        pending, commander, severity = loaded
        invocation = self._stored(pending)
        refusal = None
        if pending.status == "pending" and self._clock.now() < pending.expires_at:
            if invocation is None:
                refusal = "no_longer_valid"
            else:
                refusal = await self._refusal(request.actor, pending, commander, severity, confirm)
        settled = await self._db.run(self._settle, action_id, request, confirm, refusal)
        pending = settled.pending
        if settled.outcome == "confirmed" and invocation is not None:
            return await self._execute(settled, invocation, request)
        if settled.outcome in ("cancelled", "expired"):
            await self._update(settled, invocation, views.closed(pending, settled.outcome))
        level = self._runbooks.severities.levels.get(severity)
        return views.refusal(
            settled.outcome,
            pending,
            confirm=confirm,
            commander=commander,
            severity=level.label() if level else severity,
            confirmers=views.allowed_confirmers(self._catalog),
        )

    def _stored(self, pending: PendingAction) -> Invocation | None:
        """The stored request re-checked against the current catalog and bounds."""
        try:
            return resolve(
                self._catalog, "mitigation", pending.action, pending.service, _words(pending.params)
            )
        except UserError as exc:
            log.warning("pending action %s is no longer valid: %s", pending.id, exc)
            return None

    async def _refusal(
        self,
        actor: str,
        pending: PendingAction,
        commander: str | None,
        severity: str,
        confirm: bool,
    ) -> str | None:
        """Why `actor` may not make this decision, or None when they may."""
        if (
            confirm
            and severity in self._catalog.require_distinct_confirmer
            and actor == pending.requested_by
        ):
            return "distinct_confirmer_required"
        if actor == commander or actor in self._catalog.mitigator_users:
            return None
        if not confirm and actor == pending.requested_by:
            return None  # one may withdraw one's own proposal
        for group in self._catalog.mitigator_groups:
            try:
                if actor in await self._chat.usergroup_members(group):
                    return None
            except ChatError as exc:
                log.warning("could not read user group %s: %s", group, exc.code)
        return "not_authorised"

    async def _execute(self, settled: _Settled, invocation: Invocation, request: Request) -> str:
        pending = settled.pending
        result, error = await self._run(invocation, dry_run=False)
        await self._db.run(self._finish, settled, request.actor, invocation, result, error)
        await self._update(settled, invocation, views.ran(request.actor, result, error))
        report = await self._outbox.deliver(pending.incident_id)
        if report.errors:
            return ":warning: Ran, but Slack did not take the result message yet; retrying."
        return ""

    async def _update(self, settled: _Settled, invocation: Invocation | None, line: str) -> None:
        """Show the decision on the proposal and remove its buttons (best effort: the
        event log already has it)."""
        pending = settled.pending
        if not pending.message_ts:
            return
        message = views.decided(self._proposal(pending, invocation), line)
        try:
            await self._chat.update(
                settled.channel_id, pending.message_ts, message.text, message.blocks
            )
        except ChatError as exc:
            log.warning("could not update mitigation message %s: %s", pending.id, exc.code)

    # Transactions ------------------------------------------------------------------

    def _start(
        self, session: Session, request: Request, event: str, invocation: Invocation
    ) -> tuple[int, str] | None:
        """Claim the request and log it; None if this request was handled before."""
        incident = store.by_channel(session, request.channel_id)
        if incident is None or not incident.channel_id:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        if incident.closed_at is not None:  # its post-mortem is out: a follow-up carries on
            raise UserError(followup.refusal(incident))
        now = self._clock.now()
        if not store.claim_request(session, request.key, now):
            return None
        payload = {**_about(invocation), "args": dict(invocation.args)}
        store.append_event(session, incident, event, request.actor, now, **payload)
        return incident.id, incident.channel_id

    def _log(
        self, session: Session, incident_id: int, event: str, actor: str, **payload: Any
    ) -> None:
        incident = store.get(session, incident_id)
        if incident is not None:
            store.append_event(session, incident, event, actor, self._clock.now(), **payload)

    def _add_pending(
        self,
        session: Session,
        incident_id: int,
        invocation: Invocation,
        actor: str,
        dry: ExecutionResult,
    ) -> PendingAction:
        now = self._clock.now()
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
        )
        session.add(pending)
        session.flush()
        payload = {**_about(invocation), "action_id": pending.id, "summary": dry.summary}
        self._log(session, incident_id, "mitigation_dry_run", actor, ok=True, **payload)
        return pending

    def _settle(
        self,
        session: Session,
        action_id: int,
        request: Request,
        confirm: bool,
        refusal: str | None,
    ) -> _Settled:
        """Count the click once: a conditional UPDATE from `pending` decides it."""
        now = self._clock.now()
        pending = session.get(PendingAction, action_id)
        assert pending is not None  # rows are never deleted while their incident lives
        incident = store.get(session, pending.incident_id)
        assert incident is not None and incident.channel_id
        about: dict[str, object] = {
            "action_id": pending.id,
            "action": pending.action,
            "service": pending.service,
        }
        if not store.claim_request(session, request.key, now):
            return _Settled("duplicate", pending, incident.channel_id)
        if pending.status != "pending":
            outcome = "already_decided"
        elif now >= pending.expires_at:
            won = _transition(session, action_id, "expired", None, now)
            outcome = "expired" if won else "already_decided"
        elif refusal is not None:
            outcome = refusal
        else:
            status = "confirmed" if confirm else "cancelled"
            if _transition(session, action_id, status, request.actor, now):
                event = "mitigation_confirmed" if confirm else "mitigation_cancelled"
                about["requested_by"] = pending.requested_by
                store.append_event(session, incident, event, request.actor, now, **about)
                session.refresh(pending)
                return _Settled(status, pending, incident.channel_id)
            outcome = "already_decided"
        about |= {"reason": outcome, "confirm": confirm}
        store.append_event(session, incident, "mitigation_refused", request.actor, now, **about)
        session.refresh(pending)
        return _Settled(outcome, pending, incident.channel_id)

    def _finish(
        self,
        session: Session,
        settled: _Settled,
        actor: str,
        invocation: Invocation,
        result: ExecutionResult,
        error: bool,
    ) -> None:
        """Record the run, its event, and the result reply in the proposal's thread."""
        pending = session.get(PendingAction, settled.pending.id)
        assert pending is not None
        ok = result.ok and not error
        pending.status, pending.result = ("executed" if ok else "failed"), result.summary
        payload = {**_about(invocation), "action_id": pending.id, "summary": result.summary}
        self._log(session, pending.incident_id, "mitigation_executed", actor, ok=ok, **payload)
        text = views.outcome(invocation.command(), actor, result, error)
        now, channel, thread = self._clock.now(), settled.channel_id, pending.message_ts
        enqueue(
            session, pending.incident_id, "post", now, channel=channel, text=text, thread_ts=thread
        )

    # Helpers -----------------------------------------------------------------------

    def _proposal(self, pending: PendingAction, invocation: Invocation | None) -> views.Proposal:
        summary, _, output = pending.dry_run.partition("\n")
        action = self._catalog.actions.get(pending.action)
        return views.Proposal(
            id=pending.id,
            command=invocation.command() if invocation else f"{pending.action} {pending.service}",
            help=action.help if action else "",
            requested_by=pending.requested_by,
            dry_run_summary=summary,
            dry_run_output=output,
            expires_at=pending.expires_at,
        )


def _about(invocation: Invocation) -> dict[str, str]:
    return {"action": invocation.action.name, "service": invocation.target.name}


def _words(args: Mapping[str, Value]) -> list[str]:
    """Stored args back as words, so a confirmation re-checks them against today's config."""
    return [
        name if value is True else f"{name}={value}"
        for name, value in args.items()
        if value is not None and value is not False
    ]


def _load(session: Session, action_id: int) -> tuple[PendingAction, str | None, str] | None:
    pending = session.get(PendingAction, action_id)
    if pending is None:
        return None
    incident = store.get(session, pending.incident_id)
    if incident is None:
        return None
    return pending, incident.role("commander"), incident.severity


def _transition(
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


def _save_message_ts(session: Session, action_id: int, ts: str) -> None:
    pending = session.get(PendingAction, action_id)
    if pending is not None:
        pending.message_ts = ts
