"""The declare saga: channel, invitations, checklist and pin, resumable step by step.

The incident row is written first (keyed by the request, so a duplicate
delivery finds it). Each Slack step is recorded as it completes; `resume`
runs whatever is left. It runs right after declaring, on a retried request,
before any command in the channel, at start-up and from the periodic sweep,
under a fenced lease so only one task of one replica works on an incident at a
time, and a holder that stalled past its lease cannot record anything.

It then answers the declarer, so whoever completes the saga does it:
through the command's response_url while Slack accepts it, else with an
ephemeral message in the new channel. Complete, it starts the triage (`bot/triage`):
the scenario guessed, its diagnostics run and their digest posted, as work of its own
under a lease of its own, so neither the saga nor its lease waits for diagnostics.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.context import Context, Service
from bot.gateway import ChatError
from bot.incidents import followup, privacy, views
from bot.incidents.hooks import Triage
from bot.incidents.lease import Lease, incident_lease
from bot.incidents.outbox import Outbox
from bot.mrkdwn import channel_link
from storage import incidents as store
from storage.models import PENDING, Incident
from storage.outbox import enqueue

log = logging.getLogger(__name__)

CHANNEL_NAME_MAX = 80
MAX_NAME_ATTEMPTS = 50
# Slack errors worth retrying the answer for; any other means it cannot be delivered.
TRANSIENT = ("ratelimited", "request_timeout", "connection_error", "fatal_error", "internal_error")


@dataclass(frozen=True)
class SetupResult:
    incident: Incident
    error: str | None = None  # what failed, for the user; None when complete
    busy: bool = False  # another task or replica holds the lease


def channel_base_name(incident: Incident) -> str:
    """`incident-YYYYMMDD-<slug>`: UTC date, lowercase a-z 0-9 and `-`, at most 80.

    A private incident's name says nothing of its title (`…-private-<id>`): channel
    names are unique across the workspace, so anyone's `name_taken` would reveal it."""
    slug = re.sub(r"[^a-z0-9]+", "-", incident.title.lower()).strip("-") or str(incident.id)
    if incident.private:
        slug = f"private-{incident.id}"
    name = f"incident-{incident.declared_at:%Y%m%d}-{slug}"
    return name[:CHANNEL_NAME_MAX].rstrip("-")


def channel_name(base: str, attempt: int) -> str:
    """The name to try on the n-th attempt: base, base-2, base-3 … within 80 characters."""
    if attempt == 1:
        return base
    suffix = f"-{attempt}"
    return base[: CHANNEL_NAME_MAX - len(suffix)].rstrip("-") + suffix


class DeclareFlow(Service):
    def __init__(
        self,
        context: Context,
        *,
        outbox: Outbox,
        owner: str,
        announce_channel: str,
        security_responders: tuple[str, ...] = (),
        triage: Triage | None = None,
    ) -> None:
        super().__init__(context)
        self._outbox = outbox
        self._owner = owner
        self._announce_channel = announce_channel
        # Slack users (U…/W…) and user groups (S…) invited to every private incident.
        self._security_responders = security_responders
        self._triage = triage

    async def resume(self, incident_id: int) -> SetupResult:
        # One lease holder per call: two tasks of one replica must not both run it.
        holder = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        async with incident_lease(self._db, self._clock, incident_id, holder) as lease:
            incident = await self._db.run(store.get, incident_id)
            assert incident is not None
            if lease is None:
                return SetupResult(incident, busy=True)
            step = "creating the channel"
            try:
                if not incident.channel_id:
                    await self._create_channel(incident, lease)
                step = "inviting responders"
                if not incident.invited:
                    await self._invite(incident, lease)
                step = "posting the checklist"
                if not incident.checklist_ts or incident.checklist_ts == PENDING:
                    await self._post_checklist(incident, lease)
                step = "pinning the checklist"
                if not incident.checklist_pinned:
                    lease.check()
                    await self._chat.pin(str(incident.channel_id), str(incident.checklist_ts))
                    await self._record(lease, checklist_pinned=True)
                step = "posting messages"
                lease.check()
                await self._outbox.deliver(incident.id)
                step = "answering the declarer"
                if not incident.declarer_answered:
                    await self._answer(incident, lease)
            except store.LeaseLost:
                log.warning(
                    "declare of incident %s: lost the lease while %s; stopped", incident_id, step
                )
                return SetupResult(incident, busy=True)
            except ChatError as exc:
                log.warning("declare of incident %s stopped while %s: %s", incident.id, step, exc)
                try:
                    await self._db.run(
                        _setup_failed, lease.token, incident.id, step, exc, self._clock.now()
                    )
                except store.LeaseLost:
                    log.warning("declare of incident %s: lost the lease; stopped", incident_id)
                    return SetupResult(incident, busy=True)
                return SetupResult(incident, error=f"{step}: `{exc.code}`")
        if self._triage is not None:  # after the answer: it runs diagnostics
            self._triage.start(incident_id)
        incident = await self._db.run(store.get, incident_id)
        assert incident is not None
        return SetupResult(incident)

    async def _answer(self, incident: Incident, lease: Lease) -> None:
        """Tell the declarer the incident is ready, once, whoever completes the saga.

        Through the command's response_url while Slack accepts it; a form has none,
        so its answer goes where the form was opened; failing those, the new channel.
        """
        lease.check()
        if incident.declared_by == "firebreak":  # opened from an alert: nobody to answer
            await self._record(lease, declarer_answered=True)
            return
        channel = str(incident.channel_id)
        link = channel_link(channel, incident.channel_name)
        text = f"Declared *{incident.severity}* incident {link}."
        url, until = incident.reply_url, incident.reply_until
        places = [channel]
        if not url and incident.origin_channel_id:
            places.insert(0, incident.origin_channel_id)
        try:
            if url and until and self._clock.now() < until:
                await self._chat.respond(url, text)
                places = []
        except ChatError as exc:  # e.g. the URL expired early: say it in the channel
            log.info("response_url of incident %s refused: %s", incident.id, exc.code)
        for place in places:
            try:
                await self._chat.post_ephemeral(place, incident.declared_by, text)
                break
            except ChatError as exc:
                if exc.code in TRANSIENT:
                    raise
                log.warning("could not answer the declarer in %s: %s", place, exc.code)
        await self._record(lease, declarer_answered=True)

    async def _create_channel(self, incident: Incident, lease: Lease) -> None:
        base = channel_base_name(incident)
        bot = await self._chat.bot_user_id()
        # After a crash the name claimed last time comes first: it may already be ours.
        names = [channel_name(base, n) for n in range(1, MAX_NAME_ATTEMPTS + 1)]
        if incident.channel_name in names:
            names.remove(incident.channel_name)
            names.insert(0, incident.channel_name)
        for name in names:
            lease.check()
            if not await self._db.run(_claim_name, lease.token, incident.id, name):
                continue  # another incident holds this name
            try:
                channel_id = await self._chat.create_channel(name, private=incident.private)
            except ChatError as exc:
                if exc.code != "name_taken":
                    raise
                found = await self._chat.find_channel(name, private=incident.private)
                if found is None or found.creator != bot or found.is_archived:
                    continue
                if not await self._db.run(_unlinked, found.id):
                    continue
                channel_id = found.id  # ours, created before a crash: adopt it
            await self._db.run(self._channel_created, lease.token, incident.id, name, channel_id)
            incident.channel_id, incident.channel_name = channel_id, name
            return
        raise ChatError("conversations.create", "no_free_channel_name")

    def _channel_created(
        self, session: Session, token: int, incident_id: int, name: str, channel_id: str
    ) -> None:
        incident = store.leased(session, incident_id, token)
        now = self._clock.now()
        incident.channel_id, incident.channel_name = channel_id, name
        store.append_event(
            session, incident, "channel_created", "firebreak", now, channel=channel_id, name=name
        )
        enqueue(session, incident.id, "topic", now)
        severity = self._runbooks.severities.levels[incident.severity]
        if severity.announce and not privacy.broadcasts(incident):
            text = privacy.notice(incident)
            enqueue(
                session,
                incident.id,
                privacy.NOTICE_KIND,
                now,
                channel=self._announce_channel,
                text=text,
            )
        elif severity.announce:
            earlier = store.get(session, incident.follow_up_of) if incident.follow_up_of else None
            text = self._runbooks.templates.render(
                "announce.j2",
                incident=incident,
                commander=incident.role("commander"),
                follow_up_of=earlier,
            )
            enqueue(session, incident.id, "post", now, channel=self._announce_channel, text=text)
        followup.link_channels(session, incident, now)

    async def _invite(self, incident: Incident, lease: Lease) -> None:
        severity = self._runbooks.severities.levels[incident.severity]
        bot = await self._chat.bot_user_id()
        wanted = [incident.declared_by, incident.role("commander"), *severity.responders]
        if incident.private:
            wanted += await self._security_team(incident, lease)
        # An incident opened from an alert is declared by "firebreak": nobody to invite.
        users = list(dict.fromkeys(u for u in wanted if u and u not in (bot, "firebreak")))
        channel = str(incident.channel_id)
        for user in users:
            lease.check()
            try:
                await self._chat.invite(channel, user)
            except ChatError as exc:
                if exc.code in TRANSIENT:
                    raise
                # A wrong responder ID in config must not block the incident forever.
                log.warning("could not invite %s to %s: %s", user, channel, exc.code)
                await self._db.run(
                    _note_invite_failure,
                    lease.token,
                    incident.id,
                    user,
                    exc.code,
                    self._clock.now(),
                )
        await self._record(lease, invited=True)

    async def _security_team(self, incident: Incident, lease: Lease) -> list[str]:
        """The configured security responders, user groups expanded (usergroups.users.list).
        A group that cannot be read is recorded and skipped, like a bad user ID."""
        users: list[str] = []
        for responder in self._security_responders:
            if not responder.startswith("S"):
                users.append(responder)
                continue
            try:
                users += await self._chat.usergroup_members(responder)
            except ChatError as exc:
                if exc.code in TRANSIENT:
                    raise
                log.warning("could not read security group %s: %s", responder, exc.code)
                await self._db.run(
                    _note_invite_failure,
                    lease.token,
                    incident.id,
                    responder,
                    exc.code,
                    self._clock.now(),
                )
        return users

    async def _post_checklist(self, incident: Incident, lease: Lease) -> None:
        channel = str(incident.channel_id)
        if incident.checklist_ts == PENDING:
            # A post was attempted before; Slack may have taken it. Look first.
            for message in await self._chat.recent_messages(channel, limit=50):
                if views.CHECKLIST_MARKER in message.block_ids:
                    await self._record(lease, checklist_ts=message.ts)
                    incident.checklist_ts = message.ts
                    return
        await self._record(lease, checklist_ts=PENDING)
        ts = await self._chat.post(channel, views.checklist_message(incident, self._runbooks))
        await self._record(lease, checklist_ts=ts)
        incident.checklist_ts = ts

    async def _record(self, lease: Lease, **values: object) -> None:
        """Record a step; refused (`LeaseLost`) if another holder has the lease now."""
        await self._db.run(_update, lease.token, lease.incident_id, values)


def _update(session: Session, token: int, incident_id: int, values: dict[str, object]) -> None:
    incident = store.leased(session, incident_id, token)
    for key, value in values.items():
        setattr(incident, key, value)
    if incident.setup_complete:
        incident.setup_error = None


def _claim_name(session: Session, token: int, incident_id: int, name: str) -> bool:
    incident = store.leased(session, incident_id, token)
    return incident.channel_name == name or store.claim_channel_name(session, incident, name)


def _unlinked(session: Session, channel_id: str) -> bool:
    return store.by_channel(session, channel_id) is None


def _setup_failed(
    session: Session, token: int, incident_id: int, step: str, error: ChatError, now: datetime
) -> None:
    incident = store.leased(session, incident_id, token)
    incident.setup_error = f"{step}: {error.code}"
    store.append_event(
        session, incident, "setup_failed", "firebreak", now, step=step, error=error.code
    )


def _note_invite_failure(
    session: Session, token: int, incident_id: int, user: str, code: str, now: datetime
) -> None:
    incident = store.leased(session, incident_id, token)
    store.append_event(session, incident, "invite_failed", "firebreak", now, user=user, error=code)
