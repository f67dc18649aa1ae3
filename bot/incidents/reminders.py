"""Status-update nudges: when they fall due, sending each exactly once, snoozing.

The due time is stored on the incident (the truth); the scheduler only wakes
us at the right moment. A send is claimed in the database first, so replicas
never double it; a failed post releases the claim with a backoff, so it is
never lost; a nudge that fell due while no replica ran is sent once, late,
and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot import logs
from bot.context import Context, Service
from bot.durations import format_duration
from bot.errors import NOT_AN_INCIDENT_CHANNEL, UserError
from bot.gateway import ChatError
from bot.incidents import privacy, undeliverable
from bot.incidents.outbox import Outbox, backoff
from bot.messages import Button, Buttons, Card, Section
from bot.metrics import Metrics
from bot.mrkdwn import mention, user_text
from bot.severities import SeverityTable
from storage import incidents as incident_store
from storage import reminders as store
from storage.models import Incident
from storage.outbox import enqueue

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(seconds=60)
# A nudge sent later than this after its due time says it is late.
LATE_AFTER = timedelta(seconds=10)
POST_UPDATE_ACTION = "nudge:post_update"
ESCALATION = "nudge-escalation"  # collapse key of escalations to the broadcast channel


def retime(incident: Incident, severities: SeverityTable, now: datetime) -> None:
    """Next update due `cadence` after now; none for resolved incidents or no cadence.

    Ends any snooze, and bumps the version a reminder in flight compares against.
    """
    set_due(incident, next_due(incident, severities, now))
    incident.snoozed_until = None
    incident.nudge_claimed_until = None


def retime_keeping_snooze(
    incident: Incident, severities: SeverityTable, now: datetime
) -> datetime | None:
    """`retime` for a severity change, which keeps an active snooze: no reminder before
    it ends. Returns the snooze's end when it still decides the next reminder."""
    snoozed = incident.snoozed_until
    retime(incident, severities, now)
    due = incident.next_update_due_at
    if snoozed is None or snoozed <= now or due is None or due >= snoozed:
        return None
    set_due(incident, snoozed)
    incident.snoozed_until = snoozed
    return snoozed


def next_due(incident: Incident, severities: SeverityTable, now: datetime) -> datetime | None:
    """A full cadence from now, or the response deadline if that comes first; None when
    resolved, or the severity has no cadence and the response target is no concern."""
    if incident.status == "resolved":
        return None
    cadence = severities.levels[incident.severity].update_cadence
    due = now + cadence if cadence else None
    deadline = response_deadline(incident, severities)
    if deadline is not None and deadline > now and (due is None or deadline < due):
        return deadline
    return due


def response_deadline(incident: Incident, severities: SeverityTable) -> datetime | None:
    """When the severity's response target runs out, while it can still be missed: no
    commander, no update, not yet escalated, not resolved. None otherwise."""
    if (
        incident.response_escalated_at is not None
        or incident.last_update_at is not None
        or incident.status == "resolved"
        or incident.role("commander") is not None
    ):
        return None
    return incident.declared_at + severities.levels[incident.severity].response_target


def response_overdue(incident: Incident, severities: SeverityTable, now: datetime) -> bool:
    deadline = response_deadline(incident, severities)
    return deadline is not None and now >= deadline


class ResponseEscalation(Protocol):
    """Who else acts when a response target is missed (paging: `bot/paging`)."""

    def response_overdue(self, session: Session, incident: Incident, now: datetime) -> None: ...


def set_due(incident: Incident, due: datetime | None) -> None:
    """The one way a command moves the next-due time: always with a new version.

    Commands hold the incident's row lock; a reminder send does not (it posts to
    Slack in between), so it reschedules only through `store.reschedule`, a
    compare-and-set on the version it claimed.
    """
    incident.next_update_due_at = due
    incident.reminder_version = (incident.reminder_version or 0) + 1


def due_in(due: datetime, now: datetime) -> str:
    """`in 14m`, or `now` for a reminder that is due or overdue (never `in 0s`)."""
    if due - now < timedelta(seconds=1):
        return "now"
    return f"in {format_duration(due - now)}"


@dataclass(frozen=True)
class ReminderSettings:
    escalate_after: int  # nudges in a row without an update before escalating
    snooze_max: timedelta
    announce_channel: str


class ReminderService(Service):
    def __init__(
        self,
        context: Context,
        *,
        owner: str,
        settings: ReminderSettings,
        outbox: Outbox,
        metrics: Metrics,
        escalation: ResponseEscalation | None = None,
    ) -> None:
        super().__init__(context)
        self._owner = owner
        self._settings = settings
        self._outbox = outbox
        self._metrics = metrics
        self._escalation = escalation

    async def schedule(self) -> dict[int, datetime]:
        return await self._db.run(store.schedule)

    async def send_due(self) -> int:
        """Send every nudge that is due now; returns how many were posted."""
        ids = await self._db.run(store.due_ids, self._clock.now())
        sent = 0
        for incident_id in ids:
            sent += await self.send(incident_id)
        return sent

    async def send(self, incident_id: int) -> bool:
        now = self._clock.now()
        claimed = await self._db.run(store.claim, incident_id, self._owner, now, CLAIM_TTL)
        if claimed is None:
            return False  # not due, or another replica has it
        due_at = claimed.due_at
        incident = await self._db.run(incident_store.get, incident_id)
        assert incident is not None and incident.channel_id
        logs.incident_id.set(incident_id)
        marker = f"fb-nudge-{incident.id}-{int(due_at.timestamp())}"
        escalate = incident.nudges_missed >= self._settings.escalate_after
        late = now - due_at > LATE_AFTER
        overdue = response_overdue(incident, self._runbooks.severities, now)
        if (
            not overdue
            and self._runbooks.severities.levels[incident.severity].update_cadence is None
        ):
            # A response deadline someone answered in time (a commander took it on), on a
            # severity without update reminders: nothing to say.
            await self._db.run(self._quiet, incident.id, claimed)
            return False
        try:
            ts = await self._already_posted(incident.channel_id, marker) if claimed.lapsed else None
            if ts is None:
                nudge = self._nudge(incident, marker, now, late, escalate, overdue)
                ts = await self._chat.post(incident.channel_id, nudge)
        except ChatError as exc:
            if undeliverable.is_permanent(exc.code):
                # The channel cannot take messages (archived, say): stop nudging there.
                log.warning("nudge for incident %s undeliverable: %s", incident.id, exc.code)
                await self._db.run(self._undeliverable, incident.id, claimed.token, exc.code)
                self._metrics.undeliverable.labels(exc.code).inc()
                await self._outbox.deliver(incident.id)
                return False
            log.warning("nudge for incident %s failed: %s", incident.id, exc.code)
            retry_at = self._clock.now() + backoff(0)
            await self._db.run(self._failed, incident.id, claimed.token, exc.code, retry_at)
            self._metrics.nudge_failures.inc()
            return False
        if not await self._db.run(
            self._sent, incident.id, claimed, late, escalate, overdue, incident.last_update_at
        ):
            log.warning("nudge claim on incident %s was taken over; not recorded", incident.id)
            return False
        self._metrics.nudges.labels(str(late).lower(), str(escalate).lower()).inc()
        self._metrics.nudge_delay.observe(max(0.0, (now - due_at).total_seconds()))
        if escalate or overdue:
            await self._outbox.deliver(incident.id)
        return True

    def _quiet(self, session: Session, incident_id: int, claimed: store.Claim) -> None:
        """Free the claim of a wake-up that had nothing to say, and plan the next one."""
        incident = store.held(session, incident_id, claimed.token)
        if incident is None:
            return
        due = next_due(incident, self._runbooks.severities, self._clock.now())
        if not store.reschedule(session, incident_id, claimed.version, due):
            store.release(session, incident_id, claimed.token, None)

    async def _already_posted(self, channel: str, marker: str) -> str | None:
        for message in await self._chat.recent_messages(channel, limit=50):
            if marker in message.block_ids:
                return message.ts
        return None

    def _nudge(
        self,
        incident: Incident,
        marker: str,
        now: datetime,
        late: bool,
        escalate: bool,
        overdue: bool = False,
    ) -> Card:
        owner = incident.role("commander") or incident.declared_by
        since = incident.last_update_at or incident.declared_at
        lines = [
            f":bell: {mention(owner)}, a status update is due: "
            f"{format_duration(now - since)} since the last one.",
        ]
        if incident.last_update_text:
            lines.append(f"> {user_text(incident.last_update_text[:500])}")
        else:
            lines.append("No update has been posted since the incident was declared.")
        if late:
            lines.append("_This reminder fell due while Firebreak was unavailable; sent now._")
        if overdue:
            severity = self._runbooks.severities.levels[incident.severity]
            lines.append(
                f":rotating_light: Nobody has taken this {severity.level} on: no commander and "
                f"no update {format_duration(now - incident.declared_at)} after the declaration "
                f"(target: {severity.response_time.lower()}). Escalated to "
                f"#{self._settings.announce_channel}; `/incident commander @someone` takes it."
            )
        if escalate:
            comms = incident.role("comms")
            who = f" {mention(comms)}" if comms else ""
            where = (
                "escalated to the broadcast channel"
                if privacy.broadcasts(incident)
                else "a private incident, so not escalated to the broadcast channel"
            )
            lines.append(
                f":rotating_light:{who} {incident.nudges_missed} reminders in a row "
                f"have gone unanswered; {where}."
            )
        button = Button("Post update", POST_UPDATE_ACTION, str(incident.id), primary=True)
        return Card.of(
            Section("\n".join(lines), marker=marker),
            Buttons((button,), marker=f"nudge-actions-{incident.id}"),
        )

    def _sent(
        self,
        session: Session,
        incident_id: int,
        claimed: store.Claim,
        late: bool,
        escalate: bool,
        overdue: bool,
        update_read: datetime | None,
    ) -> bool:
        """Record a posted nudge, unless another holder took the claim over (False)."""
        incident = store.held(session, incident_id, claimed.token)
        if incident is None:
            return False
        now = self._clock.now()
        due_at = claimed.due_at
        # An update posted while this reminder was in flight answered it: the update
        # reset the count and re-timed the schedule, and neither is undone here.
        answered = incident.last_update_at != update_read
        escalate = escalate and not answered
        # Still nobody on it, under the claim's lock (a commander may have come meanwhile).
        overdue = overdue and response_overdue(incident, self._runbooks.severities, now)
        if overdue:
            self._escalate_response(session, incident, now)
        if not answered:
            incident.nudges_missed += 1
        # Coalesce: the next one is a full cadence from now, never a burst of missed ones.
        # Only if nothing re-timed it while this one was in flight: a snooze or an update
        # made then stands (compare-and-set on the version the claim read).
        due = next_due(incident, self._runbooks.severities, now)
        if answered or not store.reschedule(session, incident_id, claimed.version, due):
            store.release(session, incident_id, claimed.token, None)
        incident_store.append_event(
            session,
            incident,
            "nudge",
            "firebreak",
            now,
            due_at=due_at.isoformat(),
            late=late,
            escalated=escalate,
            answered=answered,
        )
        if escalate and privacy.broadcasts(incident):
            text = (
                f":rotating_light: *{incident.severity}* {incident.channel_name}: "
                f"{incident.nudges_missed - 1} status reminders unanswered — "
                f"<#{incident.channel_id}> needs an update."
            )
            enqueue(
                session,
                incident.id,
                "post",
                now,
                channel=self._settings.announce_channel,
                text=text,
                # Queued behind a blocked row, several would post at once: send the newest.
                collapse_key=ESCALATION,
            )
        return True

    def _escalate_response(self, session: Session, incident: Incident, now: datetime) -> None:
        """The response target is missed: say so once in the broadcast channel, and page
        where paging is configured."""
        severity = self._runbooks.severities.levels[incident.severity]
        incident.response_escalated_at = now
        incident_store.append_event(
            session,
            incident,
            "response_overdue",
            "firebreak",
            now,
            target=severity.response_time,
            target_seconds=severity.response_target.total_seconds(),
            waited_seconds=(now - incident.declared_at).total_seconds(),
        )
        text = self._runbooks.templates.render(
            "response_overdue.j2",
            incident=incident,
            severity=severity,
            waited=now - incident.declared_at,
        )
        # A private incident's overdue notice stays in its own channel (privacy.py).
        where = (
            self._settings.announce_channel if privacy.broadcasts(incident) else incident.channel_id
        )
        if where:
            enqueue(session, incident.id, "post", now, channel=str(where), text=text)
        if self._escalation is not None:
            self._escalation.response_overdue(session, incident, now)

    def _undeliverable(self, session: Session, incident_id: int, token: int, code: str) -> None:
        """Record it and say so once (in the broadcast channel, for an archived incident
        channel); try again a full cadence later, so a channel unarchived meanwhile gets
        its next reminder on time rather than one that claims Firebreak was down."""
        incident = store.held(session, incident_id, token)
        if incident is None or not incident.channel_id:
            return  # another holder has it now; its outcome is the one that counts
        now = self._clock.now()
        retime(incident, self._runbooks.severities, now)
        store.release(session, incident_id, token, None)
        undeliverable.record(
            session,
            incident,
            channel=incident.channel_id,
            code=code,
            what="post the update reminder",
            now=now,
            announce_channel=self._settings.announce_channel,
            once=True,
        )

    def _failed(
        self, session: Session, incident_id: int, token: int, error: str, retry_at: datetime
    ) -> None:
        incident = store.held(session, incident_id, token)
        if incident is None:
            return  # another holder has it now; its outcome is the one that counts
        store.release(session, incident_id, token, retry_at)
        incident_store.append_event(
            session, incident, "nudge_failed", "firebreak", self._clock.now(), error=error
        )

    # Commands -------------------------------------------------------------------

    async def show(self, channel_id: str) -> str:
        incident = await self._db.run(incident_store.by_channel, channel_id)
        if incident is None:
            raise UserError(NOT_AN_INCIDENT_CHANNEL)
        cadence = self._runbooks.severities.levels[incident.severity].update_cadence
        if cadence is None:
            return f"{incident.severity} incidents have no update reminders."
        if incident.next_update_due_at is None:
            return "No reminder is scheduled: the incident is resolved."
        now = self._clock.now()
        due = incident.next_update_due_at
        snoozed = ", snoozed" if incident.snoozed_until == due else ""
        return (
            f"Updates are due every {format_duration(cadence)} for {incident.severity}. "
            f"Next reminder {due_in(due, now)} ({due:%H:%M} UTC{snoozed}); "
            f"{incident.nudges_missed} unanswered so far."
        )

    async def snooze(self, channel_id: str, actor: str, duration: timedelta, key: str) -> str:
        if duration > self._settings.snooze_max:
            limit = format_duration(self._settings.snooze_max)
            raise UserError(f"You can snooze reminders for at most {limit}.")

        def change(session: Session) -> str:
            incident = incident_store.by_channel(session, channel_id, for_update=True)
            if incident is None:
                raise UserError(NOT_AN_INCIDENT_CHANNEL)
            if incident.next_update_due_at is None:
                return "There is no reminder to snooze."
            if not incident_store.claim_request(session, key, self._clock.now()):
                return ""
            now = self._clock.now()
            set_due(incident, now + duration)
            incident.snoozed_until = incident.next_update_due_at
            incident_store.append_event(
                session,
                incident,
                "snooze",
                actor,
                now,
                until=incident.next_update_due_at.isoformat(),
                duration=format_duration(duration),
            )
            until = f"{incident.next_update_due_at:%H:%M} UTC"
            text = (
                f":zzz: {mention(actor)} snoozed update reminders "
                f"for {format_duration(duration)} (until {until})."
            )
            enqueue(session, incident.id, "post", now, channel=channel_id, text=text)
            return ""

        reply = await self._db.run(change)
        await self._outbox.deliver()
        return reply
