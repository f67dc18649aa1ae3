"""Triage: the guess recorded with the declaration, then run as work of its own.

In the declaration's transaction (`declared`) the guess, its reasons and the
scenario's checklist items are written with the incident, so every path that
declares (the command, the modal, an alert) gets them once. Once the declare saga
is complete (the channel exists and the declarer is answered) it `start`s the
triage as background work of its own, under the triage's own lease: a burst of
declares is not queued behind diagnostics, nor is the incident's lease held for
them. The guess is posted, the scenario's read-only diagnostics run side by side
(each within the digest budget and the action timeout, through `ActionService` so
redaction, metrics and the audit events are the usual ones), and the digest and its
thread replies go out through the outbox. Each step is a conditional write on the
triage's round and state, fenced by its lease, so a retry, the sweep or another
replica resumes it without posting twice. `/incident scenario` starts a new round.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot import commands as c
from bot.actions import ActionCatalog, ActionService, ledger
from bot.actions.params import Invocation, resolve, shown
from bot.actions.views import output_message
from bot.context import Context, Service, Spawn
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.gateway import ChatError
from bot.incidents import followup
from bot.incidents.lease import Lease, incident_lease
from bot.incidents.outbox import Outbox
from bot.incidents.service import Request
from bot.mrkdwn import escape
from bot.triage import views
from bot.triage.matching import guess
from bot.triage.scenarios import Scenario, ScenarioCatalog
from storage import incidents as incident_store
from storage import triage as store
from storage.leases import LeaseLost
from storage.models import Incident, Triage
from storage.outbox import enqueue

log = logging.getLogger(__name__)

SYSTEM = "firebreak"
# Each diagnostic gets at most this long (or the action timeout, if shorter), so the
# digest is in the channel within 10 s of the declare even when a backend hangs.
DIGEST_BUDGET = 7.0


class TriageService(Service):
    def __init__(
        self,
        context: Context,
        *,
        scenarios: ScenarioCatalog,
        catalog: ActionCatalog,
        actions: ActionService,
        outbox: Outbox,
        owner: str,
        spawn: Spawn,
        budget: float = DIGEST_BUDGET,
    ) -> None:
        super().__init__(context)
        self._scenarios = scenarios
        self._catalog = catalog
        self._actions = actions
        self._outbox = outbox
        self._owner = owner
        self._spawn = spawn
        self._budget = budget
        # Triages queued or running in this process: the sweep finds those queued behind
        # a burst unfinished, and must not queue them again.
        self._started: set[int] = set()

    @property
    def services(self) -> list[str]:
        """The configured services, for the declare form's service select."""
        return list(self._catalog.targets)

    # In the declaration's transaction ------------------------------------------------

    def declared(
        self, session: Session, incident: Incident, command: c.Declare, now: datetime
    ) -> None:
        """Record the guess, its reasons and the scenario's checklist items."""
        found = guess(
            self._scenarios,
            self._catalog.targets,
            title=command.title,
            description=command.description,
            labels=dict(command.labels),
            service=command.service,
        )
        store.add(session, incident.id, found.scenario, found.service, list(found.reasons))
        scenario = self._scenarios.scenarios.get(found.scenario or "")
        added = 0
        if scenario is not None:
            added = incident_store.add_checklist_items(
                session, incident, scenario.checklist_items()
            )
        incident_store.append_event(
            session,
            incident,
            "scenario_guessed",
            SYSTEM,
            now,
            scenario=found.scenario,
            title=scenario.title if scenario else None,
            service=found.service,
            service_reason=found.service_reason,
            reasons=list(found.reasons),
            score=found.score,
            added_items=added,
        )

    # After the declare saga ------------------------------------------------------------

    def start(self, incident_id: int) -> None:
        """Run the triage as background work of its own (once queued or running here)."""
        if incident_id in self._started:
            return
        self._started.add(incident_id)
        self._spawn(self._run_started(incident_id))

    async def resume_unfinished(self) -> None:
        """Start the triages left with a step to do (a crash, a replica gone): the sweep."""
        for incident_id in await self._db.run(store.unfinished):
            self.start(incident_id)

    async def _run_started(self, incident_id: int) -> None:
        try:
            await self.run(incident_id)
        finally:
            self._started.discard(incident_id)

    async def run(self, incident_id: int) -> None:
        """Take the triage's lease and run whatever is left of this round, and of a round a
        switch started meanwhile (a holder running it now picks the round up itself)."""
        holder = f"{self._owner}:{incident_id}:triage"
        async with incident_lease(self._db, self._clock, incident_id, holder, rows=store) as lease:
            if lease is not None:
                try:
                    await self._step(incident_id, lease)
                except LeaseLost:
                    log.warning("triage of incident %s: lost the lease; stopped", incident_id)

    async def _step(self, incident_id: int, lease: Lease) -> None:
        """Post the guess, run and post the diagnostics, until done or waiting for Slack."""
        while True:
            lease.check()
            triage = await self._db.run(store.get, incident_id)
            if triage is None or triage.state == store.DONE:
                return
            incident = await self._db.run(incident_store.get, incident_id)
            if incident is None or not incident.setup_complete:
                return  # the declare saga starts it once complete
            if incident.closed_at is not None:  # nothing to triage any more
                await self._db.run(self._advance, lease, triage, store.DONE, {})
                continue
            if not await self._next(str(incident.channel_id), triage, lease):
                return  # waiting for Slack: the sweep comes back

    async def _next(self, channel: str, triage: Triage, lease: Lease) -> bool:
        """Do the step `triage.state` names; False when it must wait for a later pass."""
        scenario = self._scenarios.scenarios.get(triage.scenario or "")
        if triage.state == "guess" and scenario is None:  # no guess: nothing to say
            await self._db.run(self._advance, lease, triage, store.DONE, {})
        elif triage.state == "guess":
            assert scenario is not None
            await self._db.run(
                self._advance, lease, triage, *self._guess(channel, triage, scenario)
            )
        elif triage.state == "diagnose":
            assert scenario is not None and triage.service is not None
            results = await self._diagnose(scenario, triage.service)
            values = {"results": results, "channel": channel, "scenario": scenario}
            await self._db.run(self._advance, lease, triage, "details", values)
        elif triage.state == "details":
            assert triage.digest_outbox_id is not None
            # Sent here, or waited for while another delivery (the declare's, an alert's,
            # the sweep's) has it: the triage runs beside them now, not after them.
            await self._outbox.settle(triage.incident_id, [triage.digest_outbox_id])
            ts, failed = await self._db.run(store.posted, triage.digest_outbox_id)
            if ts is None and not failed:
                return False
            values = {"thread_ts": ts, "channel": channel}
            await self._db.run(self._advance, lease, triage, "files" if ts else "done", values)
        elif triage.state == "files":
            await self._attach(channel, triage)
            await self._db.run(self._advance, lease, triage, store.DONE, {})
        await self._outbox.deliver(triage.incident_id)
        return True

    def _guess(
        self, channel: str, triage: Triage, scenario: Scenario
    ) -> tuple[str, dict[str, Any]]:
        """The guess's step: its message, and diagnose next if there is something to run."""
        text = views.guess_text(
            self._scenarios,
            scenario,
            triage.service,
            triage.reasons,
            list(self._catalog.targets),
            switched_by=triage.switched_by,
        )
        runs = triage.service is not None and bool(scenario.diagnostics)
        return ("diagnose" if runs else store.DONE), {"text": text, "channel": channel}

    async def _diagnose(self, scenario: Scenario, service: str) -> list[dict[str, Any]]:
        """Every diagnostic of the scenario on `service`, side by side."""
        planned: list[Invocation | dict[str, Any]] = []
        for name in scenario.diagnostics:
            try:
                planned.append(resolve(self._catalog, "diagnostic", name, service, []))
            except UserError:  # the service has no section for its executor
                spec = self._catalog.actions[name]
                where = " or ".join(spec.executors)
                why = f"{service} has no {where} section in the targets file"
                planned.append({"command": f"{name} {service}", "skipped": why})
        runs = [
            self._actions.run_unattended(p, timeout=self._budget)
            for p in planned
            if isinstance(p, Invocation)
        ]
        outcomes = iter(await asyncio.gather(*runs))
        results: list[dict[str, Any]] = []
        for p in planned:
            if not isinstance(p, Invocation):
                results.append(p)
                continue
            result, error = next(outcomes)
            results.append(
                {
                    **ledger.about(p),
                    "ok": result.ok and not error,
                    "error": error,
                    "summary": result.summary,
                    "output": "" if error else result.output,
                }
            )
        return results

    async def _attach(self, channel: str, triage: Triage) -> None:
        """The full text of each output cut to fit its thread reply, as a file (best
        effort: the reply says it was cut)."""
        ts, _ = await self._db.run(store.posted, int(triage.digest_outbox_id or 0))
        for result in triage.results:
            if not output_message(result["command"], result.get("output") or "").truncated:
                continue
            name = f"{result['action']}-{result['service']}-{self._clock.now():%Y%m%d-%H%M%S}.txt"
            try:
                await self._chat.upload_file(
                    channel,
                    name,
                    result["output"],
                    title=f"Output of {escape(result['command'])}",
                    thread_ts=ts,
                )
            except ChatError as exc:
                log.warning("triage of incident %s: upload refused: %s", triage.incident_id, exc)

    # Transactions ------------------------------------------------------------------------

    def _advance(
        self, session: Session, lease: Lease, triage: Triage, to: str, values: dict[str, Any]
    ) -> None:
        """Move `triage` on to `to` and queue what that step owes, fenced by the lease and
        conditional on the round and state it read (else another run did it)."""
        # The incident's row first, as a switch locks them, so the two cannot deadlock.
        incident = incident_store.get(session, triage.incident_id, for_update=True)
        assert incident is not None
        store.leased(session, triage.incident_id, lease.token)
        now = self._clock.now()
        columns: dict[str, Any] = {}
        if "results" in values:
            columns["results"] = values["results"]
        if not store.advance(session, incident.id, triage.round, triage.state, to, **columns):
            return
        channel = values.get("channel", "")
        if "text" in values:  # guess → diagnose (or done)
            enqueue(session, incident.id, "post", now, channel=channel, text=values["text"])
        elif "results" in values:  # diagnose → details
            self._queue_digest(session, incident, triage, values, now)
        elif values.get("thread_ts"):  # details → files
            for result in triage.results:
                if result.get("output"):
                    reply = output_message(result["command"], result["output"])
                    enqueue(
                        session,
                        incident.id,
                        "card",
                        now,
                        channel=channel,
                        text=reply.card.to_json(),
                        thread_ts=values["thread_ts"],
                    )

    def _queue_digest(
        self,
        session: Session,
        incident: Incident,
        triage: Triage,
        values: dict[str, Any],
        now: datetime,
    ) -> None:
        results, scenario = values["results"], values["scenario"]
        service = str(triage.service)
        for result in results:
            if not result.get("skipped"):
                about = {k: result[k] for k in ("action", "service", "command")}
                incident_store.append_event(
                    session,
                    incident,
                    "diagnostic",
                    SYSTEM,
                    now,
                    **about,
                    ok=result["ok"],
                    summary=result["summary"],
                    triage=True,
                )
        digest = views.digest(scenario, service, results)
        row = enqueue(
            session, incident.id, "card", now, channel=values["channel"], text=digest.to_json()
        )
        session.flush()
        store.set_digest(session, incident.id, row.id)
        incident_store.append_event(
            session,
            incident,
            "triage_digest",
            SYSTEM,
            now,
            scenario=scenario.name,
            title=scenario.title,
            service=service,
            outbox_id=row.id,
            ran=[r["command"] for r in results if not r.get("skipped")],
            failed=[r["command"] for r in results if r.get("error") or r.get("ok") is False],
        )

    # /incident scenario ----------------------------------------------------------------

    async def switch(self, command: c.SwitchScenario, request: Request) -> str:
        """Show the scenario, or switch to another (its checklist, diagnostics, offers)."""
        if command.name is None:
            return await self._db.run(self._current, request.channel_id)
        scenario = self._scenarios.scenarios.get(command.name)
        if scenario is None:
            return (
                f"Unknown scenario `{shown(command.name)}`. Use one of: {self._scenarios.names()}."
            )
        if command.service is not None and command.service not in self._catalog.targets:
            configured = ", ".join(f"`{t}`" for t in self._catalog.targets)
            return f"Unknown service `{shown(command.service)}`. Configured: {configured}."
        try:
            switched = await self._db.run(self._switch, scenario, command.service, request)
        except UserError as exc:
            return str(exc)
        if switched is None:
            return ""  # a redelivery of a switch already made
        incident_id, reply = switched
        if not reply:
            self.start(incident_id)
        return reply

    def _current(self, session: Session, channel: str) -> str:
        incident = incident_store.by_channel(session, channel)
        if incident is None:
            return NOT_AN_INCIDENT_CHANNEL
        triage = store.get(session, incident.id)
        scenario = self._scenarios.scenarios.get((triage.scenario if triage else None) or "")
        if scenario is None:
            now = "No scenario is set."
        else:
            on = f" on *{escape(triage.service)}*" if triage and triage.service else ""
            now = f"The scenario is *{escape(scenario.title)}*{on} (`{scenario.name}`)."
        usage = "`/incident scenario &lt;name&gt; [service]`"
        return f"{now} Switch with {usage}: {self._scenarios.names()}."

    def _switch(
        self, session: Session, scenario: Scenario, service: str | None, request: Request
    ) -> tuple[int, str] | None:
        incident = incident_store.by_channel(session, request.channel_id, for_update=True)
        if incident is None:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        if incident.closed_at is not None:
            raise UserError(followup.refusal(incident))
        now = self._clock.now()
        if not incident_store.claim_request(session, request.key, now):
            return None
        triage = store.get(session, incident.id, for_update=True)
        if triage is None:
            triage = store.add(session, incident.id, None, None, [])
            session.flush()
        service = service or triage.service
        if triage.scenario == scenario.name and triage.service == service:
            return incident.id, f"The scenario is already *{escape(scenario.title)}*."
        old = triage.scenario
        store.restart(triage, scenario.name, service, request.actor)
        added = incident_store.add_checklist_items(session, incident, scenario.checklist_items())
        if added:
            enqueue(session, incident.id, "checklist", now)
        incident_store.append_event(
            session,
            incident,
            "scenario_switched",
            request.actor,
            now,
            old=old,
            new=scenario.name,
            title=scenario.title,
            service=service,
            added_items=added,
        )
        return incident.id, ""
