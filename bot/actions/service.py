"""Runbook actions in an incident: diagnostics run at once, mitigations after a confirmed dry run.

Every step is an event in the incident log (requested, dry run, confirmed,
refused, cancelled, result), written in the transaction that claims the
request's idempotency key, so a redelivered command or click does nothing twice.
A mitigation is a `PendingAction` pinning what its dry run resolved: its Confirm
button carries the row's ID, and the transactions in `bot.actions.ledger` make one
click, newer proposal or close, on one replica, decide it. Executor calls run under
a timeout and every failure becomes a message and an event, never an exception in
the channel.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from bot import commands as c
from bot import logs
from bot.actions import ledger, views
from bot.actions.catalog import ActionCatalog
from bot.actions.params import Executors, Invocation, as_words, resolve
from bot.context import Context, Service
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.executors import ExecutionResult
from bot.gateway import ChatError
from bot.incidents import followup
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.metrics import Metrics
from bot.mrkdwn import escape
from storage import incidents as store
from storage.models import PendingAction

log = logging.getLogger(__name__)


class ActionService(Service):
    def __init__(
        self,
        context: Context,
        *,
        catalog: ActionCatalog,
        executors: Executors,
        outbox: Outbox,
        metrics: Metrics,
        timeout: float = 45.0,
    ) -> None:
        super().__init__(context)
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
        logs.incident_id.set(incident_id)
        result, error = await self._run(invocation, dry_run=False)
        name = invocation.command()
        thread_ts, reply = None, ""
        try:
            thread_ts = await self._show(channel, invocation, request.actor, result, error)
        except ChatError as exc:
            reply = views.not_shown(name, result.summary, exc.code)
        payload = {**ledger.about(invocation), "summary": result.summary, "thread_ts": thread_ts}
        ok = result.ok and not error
        await self._db.run(self._log, incident_id, "diagnostic", request.actor, ok=ok, **payload)
        return reply

    async def _show(
        self, channel: str, invocation: Invocation, actor: str, result: ExecutionResult, error: bool
    ) -> str:
        """Summary in the channel, output in its thread (the full text as a file if cut),
        and the files the action made (a chart) in the thread too."""
        name = invocation.command()
        summary = views.diagnostic_summary(name, actor, result, error)
        ts = await self._chat.post(channel, summary.card)
        if result.output and not error:
            output = views.output_message(name, result.output)
            await self._chat.post(channel, output.card, thread_ts=ts)
            if output.truncated:
                about = f"{invocation.action.name}-{invocation.target.name}"
                await self._chat.upload_file(
                    channel,
                    f"{about}-{self._clock.now():%Y%m%d-%H%M%S}.txt",
                    result.output,
                    title=f"Output of {escape(name)}",
                    thread_ts=ts,
                )
        if not error:
            for file in result.files:  # a chart: read faster than the numbers
                await self._chat.upload_file(
                    channel, file.filename, file.content, title=escape(file.title), thread_ts=ts
                )
        return ts

    async def run_unattended(
        self, invocation: Invocation, *, timeout: float
    ) -> tuple[ExecutionResult, bool]:
        """A diagnostic Firebreak runs on its own (triage at declare): the same executors,
        redaction and metrics as a requested one, within `timeout` if that is shorter
        than the action timeout. The caller logs it."""
        assert invocation.action.kind == "diagnostic"  # never a write without confirmation
        return await self._run(invocation, dry_run=False, timeout=min(timeout, self._timeout))

    async def _run(
        self, invocation: Invocation, *, dry_run: bool, timeout: float | None = None
    ) -> tuple[ExecutionResult, bool]:
        """Run through the executors, counted by action, kind and result."""
        result, error = await self._executors.run(
            invocation, dry_run=dry_run, timeout=timeout or self._timeout
        )
        kind = "dry_run" if dry_run else invocation.action.kind
        outcome = "unavailable" if error else ("ok" if result.ok else "failed")
        self._metrics.runbook_actions.labels(invocation.action.name, kind, outcome).inc()
        return result, error

    # Mitigations -------------------------------------------------------------------

    async def propose(self, command: c.RequestMitigation, request: Request) -> str:
        """List the mitigations, or dry-run one and post it with Confirm and Cancel.

        The proposal pins what its dry run resolved, and retires older proposals of the
        same action on the same service: only the newest one can be confirmed."""
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
        logs.incident_id.set(incident_id)
        dry, error = await self._run(invocation, dry_run=True)
        if error or not dry.ok:
            payload = {**ledger.about(invocation), "summary": dry.summary}
            await self._db.run(
                self._log, incident_id, "mitigation_dry_run", request.actor, ok=False, **payload
            )
            return views.dry_run_failed(invocation.command(), dry.summary)
        try:
            pending, superseded = await self._db.run(
                ledger.add_pending, self._clock.now(), incident_id, invocation, request.actor, dry
            )
        except UserError as exc:  # the incident closed while the dry run ran
            return str(exc)
        message = views.proposal(self._proposal(pending, invocation))
        try:
            ts = await self._chat.post(channel, message.card)
        except ChatError as exc:
            return f":warning: Slack refused the confirmation message (`{exc.code}`); ask again."
        await self._db.run(ledger.save_message_ts, pending.id, ts)
        line = views.superseded(invocation.command(), request.actor)
        for old in superseded:
            await self._update(ledger.Settled("superseded", old, channel), line)
        return ""

    async def decide(self, action_id: int, confirm: bool, request: Request) -> str:
        """A Confirm or Cancel click: authorise, count it once, then run or close it."""
        loaded = await self._db.run(ledger.load, action_id)
        if loaded is None:
            return "That mitigation no longer exists."
        pending, incident = loaded
        invocation = self._stored(pending)
        refusal = None
        if pending.status == "pending" and self._clock.now() < pending.expires_at:
            if invocation is None or not pending.pinned:
                refusal = "no_longer_valid"
            else:
                refusal = await self._refusal(request.actor, pending, incident, confirm)
        settled = await self._db.run(
            ledger.settle, self._clock.now(), action_id, request, confirm, refusal
        )
        pending = settled.pending
        if settled.outcome == "confirmed" and invocation is not None:
            return await self._execute(settled, invocation, request)
        if settled.outcome in ("cancelled", "expired", "closed"):
            await self._update(settled, views.closed(pending, settled.outcome))
        return views.refusal(
            settled.outcome,
            pending,
            confirm=confirm,
            who=self._who_may_act(pending, incident, confirm),
            severity=self._severity_label(incident.severity),
        )

    async def retire_open(self, incident_id: int, actor: str) -> None:
        """At close: retire the incident's open proposals and say so on their messages.
        Safe to repeat; a click that races it loses (or wins) through the same
        conditional UPDATE."""
        retired = await self._db.run(ledger.retire, self._clock.now(), incident_id, actor)
        for settled in retired:
            await self._update(settled, views.closed(settled.pending, "closed"))

    def _stored(self, pending: PendingAction) -> Invocation | None:
        """The stored request re-checked against the current catalog and bounds."""
        try:
            return resolve(
                self._catalog,
                "mitigation",
                pending.action,
                pending.service,
                as_words(pending.params),
            )
        except UserError as exc:
            log.warning("pending action %s is no longer valid: %s", pending.id, exc)
            return None

    async def _refusal(
        self, actor: str, pending: PendingAction, incident: ledger.IncidentView, confirm: bool
    ) -> str | None:
        """Why `actor` may not make this decision, or None when they may."""
        if incident.closed:
            return None  # `_settle` retires it whoever clicks
        distinct = incident.severity in self._catalog.require_distinct_confirmer
        if confirm and distinct and actor == pending.requested_by:
            return "distinct_confirmer_required"
        if confirm and self._catalog.commander_only(pending.action):
            return None if actor == incident.commander else "commander_only"
        if actor == incident.commander or actor in self._catalog.mitigator_users:
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

    def _who_may_act(
        self, pending: PendingAction, incident: ledger.IncidentView, confirm: bool
    ) -> views.Deciders:
        """Who may make this decision now (the requester excluded where P0 needs a
        second person), for a refusal that tells the clicker whom to ask."""
        excluded = (
            pending.requested_by
            if confirm and incident.severity in self._catalog.require_distinct_confirmer
            else None
        )
        users = sorted(u for u in self._catalog.mitigator_users if u != excluded)
        groups = self._catalog.mitigator_groups
        if confirm and self._catalog.commander_only(pending.action):
            users, groups = [], ()
        commander = incident.commander if incident.commander != excluded else None
        return views.Deciders(
            users=tuple(users),
            groups=groups,
            commander=commander,
            commander_set=incident.commander is not None,
        )

    def _severity_label(self, severity: str) -> str:
        level = self._runbooks.severities.levels.get(severity)
        return level.label() if level else severity

    async def _execute(
        self, settled: ledger.Settled, invocation: Invocation, request: Request
    ) -> str:
        pending = settled.pending
        result, error = await self._executors.run(
            invocation, dry_run=False, timeout=self._timeout, pinned=pending.pinned
        )
        outcome = ledger.outcome_of(result, error)
        self._metrics.runbook_actions.labels(invocation.action.name, "mitigation", outcome).inc()
        await self._db.run(
            ledger.finish, self._clock.now(), settled, request.actor, invocation, result, outcome
        )
        await self._update(settled, views.ran(request.actor, result, outcome))
        report = await self._outbox.deliver(pending.incident_id)
        if report.slack_waits():
            return ":warning: Ran, but Slack did not take the result message yet; retrying."
        return ""

    async def _update(self, settled: ledger.Settled, line: str) -> None:
        """Show the decision on the proposal and remove its buttons (best effort: the
        event log already has it)."""
        pending = settled.pending
        if not pending.message_ts:
            return
        message = views.decided(self._proposal(pending, self._stored(pending)), line)
        try:
            await self._chat.update(settled.channel_id, pending.message_ts, message.card)
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
        payload = {**ledger.about(invocation), "args": dict(invocation.args)}
        store.append_event(session, incident, event, request.actor, now, **payload)
        return incident.id, incident.channel_id

    def _log(
        self, session: Session, incident_id: int, event: str, actor: str, **payload: Any
    ) -> None:
        ledger.log(session, self._clock.now(), incident_id, event, actor, **payload)

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
