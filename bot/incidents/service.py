"""The incident service: one method per thing a responder asks for.

Each change runs in one transaction that checks the request's idempotency
key, updates the incident, appends its events and queues the Slack messages
it owes (the outbox). Delivery happens after the commit, so a Slack failure
never undoes or half-does a change: the message is retried until it lands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot import commands as c
from bot import logs
from bot.context import Context, Service
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.gateway import ChatError
from bot.incidents import followup, privacy, views
from bot.incidents.declare import DeclareFlow
from bot.incidents.hooks import IncidentHooks, Triage
from bot.incidents.limits import SECTION_MAX, check_message
from bot.incidents.outbox import Outbox
from bot.incidents.people import check_assignable
from bot.incidents.reminders import retime, retime_keeping_snooze
from bot.mrkdwn import mention, user_text
from storage import incidents as store
from storage import paging as paging_store
from storage.db import DatabaseUnavailable
from storage.models import Event, Incident
from storage.outbox import enqueue, outbox_rows, queued_in

log = logging.getLogger(__name__)

FOLLOW_UP_SHOWN = 10  # action items listed in the close message; the rest are counted

# A change applied inside the transaction: returns the requester's reply.
Change = Callable[[Session, Incident, datetime], str]


@dataclass(frozen=True)
class Request:
    """Who asked, where, and the key that makes a redelivery harmless."""

    actor: str
    channel_id: str
    key: str
    # Where a declare's author is answered when the saga completes: a response_url,
    # accepted by Slack until `reply_until` (else an ephemeral in the new channel).
    reply_url: str | None = None
    reply_until: datetime | None = None


class IncidentService(Service):
    def __init__(
        self,
        context: Context,
        *,
        outbox: Outbox,
        declare_flow: DeclareFlow,
        announce_channel: str,
        hooks: IncidentHooks | None = None,
        triage: Triage | None = None,
    ) -> None:
        super().__init__(context)
        self._outbox = outbox
        self._declare_flow = declare_flow
        self._announce_channel = announce_channel
        self._hooks = hooks
        self._triage = triage

    # Anywhere ---------------------------------------------------------------

    async def declare(self, command: c.Declare, request: Request) -> str:
        """Record the incident, then run the declare saga; a redelivery resumes it.

        The saga answers the declarer itself when it completes, whichever process
        completes it; what is returned here is only news of a failure: a commander
        refused, or a message Slack will never take."""
        refused = ""
        if command.commander:  # from the form, whose user picker offers bots too
            try:
                await check_assignable(self._chat, command.commander, "commander")
            except UserError as exc:
                command, refused = replace(command, commander=None), f"\n{exc}"
            except ChatError as exc:  # the picker offers only real users: declare anyway
                log.warning("could not check commander %s: %s", command.commander, exc.code)
        incident_id = await self._db.run(self.record_declaration, command, request)
        try:
            result = await self._declare_flow.resume(incident_id)
        except DatabaseUnavailable:
            # The incident is recorded (and maybe its channel made): "nothing was changed"
            # would be wrong, and a retry by the user would declare it twice.
            return (
                f":warning: Incident #{incident_id} is recorded, but the database became "
                "unavailable while Slack was setting it up. Firebreak finishes it once the "
                "database is back; nothing will be created twice."
            )
        if result.error:
            return (
                f":warning: Incident #{result.incident.id} is recorded, but Slack failed while "
                f"{result.error}. Firebreak keeps retrying; nothing will be created twice."
                f"{refused}"
            )
        if result.busy:
            return refused.strip()  # whoever holds the saga answers the declarer
        owed = await self._db.run(outbox_rows, result.incident.id)
        outcome = await self._outbox.settle(result.incident.id, owed)
        return "\n".join(part for part in (refused.strip(), outcome) if part)

    def record_declaration(self, session: Session, command: c.Declare, request: Request) -> int:
        """Write the incident, its checklist and its `declared` event (once per request key);
        the declare saga does the Slack part. Also used for incidents opened from alerts."""
        existing = store.find_by_request(session, request.key)
        if existing is not None:
            return existing.id
        now = self._clock.now()
        earlier = followup.closed_incident_in(session, request.channel_id)
        incident = store.add_incident(
            session,
            request_key=request.key,
            title=command.title,
            description=command.description,
            severity=command.severity,
            declared_by=request.actor,
            at=now,
            origin_channel_id=request.channel_id,
            reply_url=request.reply_url,
            reply_until=request.reply_until,
            private=command.private,
        )
        if incident is None:  # the same request, committed by a concurrent delivery
            existing = store.find_by_request(session, request.key)
            assert existing is not None
            return existing.id
        follow_up = None
        if earlier is not None:
            incident.follow_up_of = earlier.id
            follow_up = {"id": earlier.id, "channel": earlier.channel_name}
        retime(incident, self._runbooks.severities, now)
        severity = self._runbooks.severities.levels[command.severity]
        items = self._runbooks.severities.checklist_for(severity)
        store.add_checklist_items(session, incident, ((i.key, i.phase, i.text) for i in items))
        store.append_event(
            session,
            incident,
            "declared",
            request.actor,
            now,
            title=command.title,
            severity=command.severity,
            description=command.description,
            follow_up_of=follow_up,
            service=command.service,
            private=command.private,
            # The response target in force, for the post-mortem to compare against.
            response_time=severity.response_time,
            response_seconds=severity.response_target.total_seconds(),
        )
        if command.commander:
            store.set_role(session, incident, "commander", command.commander, request.actor, now)
            store.append_event(
                session,
                incident,
                "role",
                request.actor,
                now,
                role="commander",
                user=command.commander,
            )
        session.flush()  # the hooks' and the triage's rows need the incident's ID
        if self._hooks is not None:
            self._hooks.declared(session, incident, now, command.service)
        if self._triage is not None:
            self._triage.declared(session, incident, command, now)
        return incident.id

    async def list_open(self) -> str:
        incidents = await self._db.run(store.open_incidents)
        return views.incident_list(incidents, self._runbooks, self._clock.now())

    async def resume_unfinished(self) -> None:
        """Finish declare sagas and deliver queued messages (start-up and periodic sweep)."""
        for incident_id in await self._db.run(store.unfinished_setups):
            await self._declare_flow.resume(incident_id)
        await self._outbox.deliver()

    # In an incident channel -------------------------------------------------

    async def set_severity(self, command: c.SetSeverity, request: Request) -> str:
        new = self._runbooks.severities.levels[command.severity]

        def change(session: Session, incident: Incident, now: datetime) -> str:
            old = self._runbooks.severities.levels[incident.severity]
            if old.level == new.level:
                return f"The severity is already {new.level}."
            incident.severity = new.level
            snoozed = retime_keeping_snooze(incident, self._runbooks.severities, now)
            incident.nudges_missed = 0  # a new severity starts the reminders afresh
            items = self._runbooks.severities.checklist_for(new)
            added = store.add_checklist_items(
                session, incident, ((i.key, i.phase, i.text) for i in items)
            )
            store.append_event(
                session,
                incident,
                "severity",
                request.actor,
                now,
                old=old.level,
                new=new.level,
                added_items=added,
                response_time=new.response_time,
                response_seconds=new.response_target.total_seconds(),
            )
            self._post(
                session,
                incident,
                now,
                request.actor,
                "severity_changed.j2",
                old=old.level,
                new=new,
                added=added,
            )
            if added:
                enqueue(session, incident.id, "checklist", now)
            if self._hooks is not None:
                self._hooks.severity_changed(session, incident, now)
            if new.escalate and new.rank < old.rank:
                self._post(
                    session,
                    incident,
                    now,
                    request.actor,
                    "escalated.j2",
                    broadcast=True,
                    old=old.level,
                )
            enqueue(session, incident.id, "topic", now)
            return f"Update reminders stay snoozed until {snoozed:%H:%M} UTC." if snoozed else ""

        return await self._change(request, change)

    async def set_status(self, command: c.SetStatus, request: Request) -> str:
        if command.status == "resolved":
            return await self.resolve(c.Resolve(), request)

        def change(session: Session, incident: Incident, now: datetime) -> str:
            old = incident.status
            if old == command.status:
                return f"The status is already {old}."
            incident.status = command.status
            reopened = old == "resolved"
            if reopened:
                incident.resolved_at = None
                incident.nudges_missed = 0
                retime(incident, self._runbooks.severities, now)
            store.append_event(
                session, incident, "status", request.actor, now, old=old, new=command.status
            )
            self._post(
                session,
                incident,
                now,
                request.actor,
                "status_changed.j2",
                old=old,
                new=command.status,
            )
            if reopened:  # the broadcast channel's last word was "Resolved"
                self._post(
                    session,
                    incident,
                    now,
                    request.actor,
                    "status_changed.j2",
                    broadcast=True,
                    old=old,
                    new=command.status,
                )
            enqueue(session, incident.id, "topic", now)
            return ""

        return await self._change(request, change)

    async def post_update(self, command: c.PostUpdate, request: Request) -> str:
        def change(session: Session, incident: Incident, now: datetime) -> str:
            fields = {"next_steps": command.next_steps, "impact": command.impact}
            event = store.append_event(
                session,
                incident,
                "update",
                request.actor,
                now,
                text=command.text,
                **{k: v for k, v in fields.items() if v},
            )
            incident.last_update_at, incident.last_update_text = now, command.text
            incident.nudges_missed = 0
            retime(incident, self._runbooks.severities, now)
            for broadcast in (False, True):
                self._post(
                    session,
                    incident,
                    now,
                    request.actor,
                    "update.j2",
                    text=command.text,
                    broadcast=broadcast,
                    event=None if broadcast else event,
                    **fields,
                )
            return ""

        return await self._change(request, change)

    async def assign_role(self, command: c.AssignRole, request: Request) -> str:
        await check_assignable(self._chat, command.user_id, command.role)

        def change(session: Session, incident: Incident, now: datetime) -> str:
            if incident.role(command.role) == command.user_id:
                return f"<@{command.user_id}> is already the {command.role}."
            previous = store.set_role(
                session, incident, command.role, command.user_id, request.actor, now
            )
            store.append_event(
                session,
                incident,
                "role",
                request.actor,
                now,
                role=command.role,
                user=command.user_id,
                previous=previous,
            )
            enqueue(session, incident.id, "invite", now, text=command.user_id)
            self._post(
                session,
                incident,
                now,
                request.actor,
                "role_assigned.j2",
                role=command.role,
                user=command.user_id,
                previous=previous,
            )
            if command.role == "commander":
                enqueue(session, incident.id, "topic", now)
            return ""

        return await self._change(request, change)

    async def add_note(self, command: c.AddNote, request: Request) -> str:
        def change(session: Session, incident: Incident, now: datetime) -> str:
            event = store.append_event(
                session, incident, "note", request.actor, now, text=command.text
            )
            self._post(
                session, incident, now, request.actor, "note.j2", text=command.text, event=event
            )
            return ""

        return await self._change(request, change)

    async def resolve(self, command: c.Resolve, request: Request) -> str:
        def change(session: Session, incident: Incident, now: datetime) -> str:
            if incident.status == "resolved" and incident.resolved_at:
                return self._resolved_again(session, incident, now, request.actor, command)
            old = incident.status
            incident.status = "resolved"
            incident.resolved_at = now
            incident.resolution_summary = command.summary or incident.resolution_summary
            retime(incident, self._runbooks.severities, now)  # resolved: no more reminders
            cause = {"root_cause": command.root_cause} if command.root_cause else {}
            store.append_event(
                session,
                incident,
                "resolved",
                request.actor,
                now,
                summary=command.summary,
                old=old,
                **cause,
            )
            # The seeds' close message: duration, root cause, fix, follow-up.
            follow_up = [
                e.payload for e in paging_store.events(session, incident.id, "action_item")
            ]
            # A private incident's resolution stays in its channel (`privacy.broadcasts`).
            for broadcast in (False, True) if privacy.broadcasts(incident) else (False,):
                context = {"duration": now - incident.declared_at, "root_cause": command.root_cause}
                text = self._fitting(
                    "resolved.j2", incident, request.actor, broadcast, context, follow_up
                )
                channel = self._announce_channel if broadcast else str(incident.channel_id)
                enqueue(session, incident.id, "post", now, channel=channel, text=text)
            if self._hooks is not None:
                self._hooks.resolved(session, incident, request.actor, now)
            enqueue(session, incident.id, "topic", now)
            return ""

        return await self._change(request, change)

    def _resolved_again(
        self, session: Session, incident: Incident, now: datetime, actor: str, command: c.Resolve
    ) -> str:
        """`resolve` on a resolved incident: a summary given now is recorded (it is
        what the post-mortem's Resolution says), never dropped."""
        if not command.summary:
            when = f"{incident.resolved_at:%Y-%m-%d %H:%M} UTC"
            hint = (
                ""
                if incident.resolution_summary
                else " Say how with `/incident resolve <summary>`; the post-mortem uses it."
            )
            return f"This incident was already resolved at {when}.{hint}"
        previous = incident.resolution_summary
        incident.resolution_summary = command.summary
        store.append_event(
            session,
            incident,
            "resolution_summary",
            actor,
            now,
            summary=command.summary,
            previous=previous,
        )
        text = (
            f":white_check_mark: {mention(actor)} recorded how it was resolved:\n"
            f"> {user_text(command.summary)}"
        )
        enqueue(session, incident.id, "post", now, channel=str(incident.channel_id), text=text)
        return ""

    async def add_action_item(self, command: c.AddActionItem, request: Request) -> str:
        today = self._clock.now().date()
        due = command.due.resolve(today)
        if due < today:
            raise UserError(f"The due date {due:%Y-%m-%d} is in the past.")
        if due > today + timedelta(days=c.DUE_MAX_DAYS):
            raise UserError(f"A due date is at most {c.DUE_MAX_DAYS} days away.")

        def change(session: Session, incident: Incident, now: datetime) -> str:
            store.append_event(
                session,
                incident,
                "action_item",
                request.actor,
                now,
                text=command.text,
                owner=command.owner,
                category=command.category,
                due=due.isoformat(),
            )
            owner = f" (owner {mention(command.owner)})" if command.owner else ""
            text = (
                f":clipboard: Action item ({command.category}, due {due:%Y-%m-%d}) "
                f"from {mention(request.actor)}: {user_text(command.text)}{owner}"
            )
            check_message(text)
            enqueue(session, incident.id, "post", now, channel=str(incident.channel_id), text=text)
            return ""

        return await self._change(request, change)

    async def toggle_checklist(self, request: Request, ticked: set[str], unticked: set[str]) -> str:
        """Apply one click: the boxes this person ticked and unticked, nothing else.

        A click carries the whole selection of its group as the clicker's screen
        showed it, which may predate someone else's tick; taking that selection as
        the group's state would undo the other tick in this person's name. So the
        caller passes only the difference the click made, and it is applied to the
        stored state under the incident's row lock (`_change`).
        """

        def change(session: Session, incident: Incident, now: datetime) -> str:
            for item in incident.checklist:
                if item.key not in (unticked if item.checked else ticked):
                    continue  # this click did not change it, whatever its screen showed
                item.checked = not item.checked
                item.checked_by = request.actor if item.checked else None
                item.checked_at = now if item.checked else None
                kind = "checklist_checked" if item.checked else "checklist_unchecked"
                store.append_event(
                    session,
                    incident,
                    kind,
                    request.actor,
                    now,
                    key=item.key,
                    text=item.text,
                    phase=item.phase,
                )
            enqueue(session, incident.id, "checklist", now)  # re-rendered from the stored state
            return ""

        return await self._change(request, change)

    # Plumbing -----------------------------------------------------------------

    async def _change(self, request: Request, change: Change) -> str:
        """Apply `change` to the channel's incident once per request key, then deliver."""

        def work(session: Session) -> tuple[int, str, bool, list[int]]:
            incident = store.by_channel(session, request.channel_id, for_update=True)
            if incident is None:
                raise UserError(NOT_AN_INCIDENT_CHANNEL)
            if incident.closed_at is not None:
                raise UserError(followup.refusal(incident))
            if not store.claim_request(session, request.key, self._clock.now()):
                return incident.id, "", incident.setup_complete, []
            now = self._clock.now()
            reply = change(session, incident, now)
            owed = queued_in(session)  # the messages it owes
            return incident.id, reply, incident.setup_complete, owed

        incident_id, reply, set_up, owed = await self._db.run(work)
        logs.incident_id.set(incident_id)
        try:
            if not set_up:
                await self._declare_flow.resume(incident_id)
            await self._outbox.deliver(incident_id)
            # What became of this change's own messages (another command's delivery, or
            # another replica, may be the one sending them).
            outcome = await self._outbox.settle(incident_id, owed)
        except DatabaseUnavailable:
            # The change is committed; only its Slack messages are left, and the sweep
            # delivers them. Repeating the command would make it twice.
            return (reply + "\n" if reply else "") + (
                ":warning: Saved, but the database became unavailable while Firebreak was "
                "posting to Slack; the rest is posted once it is back. No need to repeat it."
            )
        return "\n".join(part for part in (reply, outcome) if part)

    def _fitting(
        self,
        template: str,
        incident: Incident,
        actor: str,
        broadcast: bool,
        context: dict[str, object],
        follow_up: list[dict[str, object]],
    ) -> str:
        """`template` with as many follow-up items as fit in one Slack section (the rest
        counted as "more"); the people's own text in it was checked when it arrived."""
        for shown in range(min(len(follow_up), FOLLOW_UP_SHOWN), -1, -1):
            text = self._runbooks.templates.render(
                template,
                incident=incident,
                actor=actor,
                broadcast=broadcast,
                follow_up=follow_up[:shown],
                more=len(follow_up) - shown,
                **context,
            )
            if shown == 0 or len(text) <= SECTION_MAX:
                break
        check_message(text)
        return text

    def _post(
        self,
        session: Session,
        incident: Incident,
        now: datetime,
        actor: str,
        template: str,
        *,
        broadcast: bool = False,
        event: Event | None = None,
        **context: object,
    ) -> None:
        """Queue a message for the incident channel, or with `broadcast` the broadcast channel.

        The template sees `broadcast` too, so one template serves both places. With
        `event`, the event records which message it posted, so the post-mortem shows
        the replies to that message under the event instead of the message again.
        A private incident's broadcasts are not queued at all (`privacy.broadcasts`).
        """
        if broadcast and not privacy.broadcasts(incident):
            return
        text = self._runbooks.templates.render(
            template, incident=incident, actor=actor, broadcast=broadcast, **context
        )
        check_message(text)
        channel = self._announce_channel if broadcast else str(incident.channel_id)
        message = enqueue(session, incident.id, "post", now, channel=channel, text=text)
        if event is not None:
            session.flush()  # assigns the message its id
            event.payload = {**event.payload, "outbox_id": message.id}
