"""The declare saga: channel, invitations, checklist and pin, resumable step by step.

The incident row is written first (keyed by the request, so a duplicate
delivery finds it). Each Slack step is recorded as it completes; `resume`
runs whatever is left. It runs right after declaring, on a retried request,
before any command in the channel, at start-up and from the periodic sweep,
under a lease so only one task of one replica works on an incident at a time.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.gateway import ChatError, ChatGateway
from bot.incidents import followup, views
from bot.incidents.lease import incident_lease
from bot.incidents.outbox import Outbox
from bot.runbooks import Runbooks
from storage import incidents as store
from storage.db import Database
from storage.models import PENDING, Incident
from storage.outbox import enqueue

log = logging.getLogger(__name__)

CHANNEL_NAME_MAX = 80
MAX_NAME_ATTEMPTS = 50
CHECKLIST_MARKER = "checklist-intro"


@dataclass(frozen=True)
class SetupResult:
    incident: Incident
    error: str | None = None  # what failed, for the user; None when complete
    busy: bool = False  # another task or replica holds the lease


def channel_base_name(incident: Incident) -> str:
    """`incident-YYYYMMDD-<slug>`: UTC date, lowercase a-z 0-9 and `-`, at most 80."""
    slug = re.sub(r"[^a-z0-9]+", "-", incident.title.lower()).strip("-") or str(incident.id)
    name = f"incident-{incident.declared_at:%Y%m%d}-{slug}"
    return name[:CHANNEL_NAME_MAX].rstrip("-")


def channel_name(base: str, attempt: int) -> str:
    """The name to try on the n-th attempt: base, base-2, base-3 … within 80 characters."""
    if attempt == 1:
        return base
    suffix = f"-{attempt}"
    return base[: CHANNEL_NAME_MAX - len(suffix)].rstrip("-") + suffix


class DeclareFlow:
    def __init__(
        self,
        *,
        db: Database,
        chat: ChatGateway,
        runbooks: Runbooks,
        clock: Clock,
        outbox: Outbox,
        owner: str,
        announce_channel: str,
    ) -> None:
        self._db = db
        self._chat = chat
        self._runbooks = runbooks
        self._clock = clock
        self._outbox = outbox
        self._owner = owner
        self._announce_channel = announce_channel

    async def resume(self, incident_id: int) -> SetupResult:
        # One lease holder per call: two tasks of one replica must not both run it.
        holder = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        async with incident_lease(self._db, self._clock, incident_id, holder) as leased:
            incident = await self._db.run(store.get, incident_id)
            assert incident is not None
            if not leased:
                return SetupResult(incident, busy=True)
            step = "creating the channel"
            try:
                if not incident.channel_id:
                    await self._create_channel(incident)
                step = "inviting responders"
                if not incident.invited:
                    await self._invite(incident)
                step = "posting the checklist"
                if not incident.checklist_ts or incident.checklist_ts == PENDING:
                    await self._post_checklist(incident)
                step = "pinning the checklist"
                if not incident.checklist_pinned:
                    await self._chat.pin(str(incident.channel_id), str(incident.checklist_ts))
                    await self._record(incident.id, checklist_pinned=True)
                step = "posting messages"
                await self._outbox.deliver(incident.id)
            except ChatError as exc:
                log.warning("declare of incident %s stopped while %s: %s", incident.id, step, exc)
                await self._db.run(_setup_failed, incident.id, step, exc.code, self._clock.now())
                return SetupResult(incident, error=f"{step}: `{exc.code}`")
        incident = await self._db.run(store.get, incident_id)
        assert incident is not None
        return SetupResult(incident)

    async def _create_channel(self, incident: Incident) -> None:
        base = channel_base_name(incident)
        bot = await self._chat.bot_user_id()
        # After a crash the name claimed last time comes first: it may already be ours.
        names = [channel_name(base, n) for n in range(1, MAX_NAME_ATTEMPTS + 1)]
        if incident.channel_name in names:
            names.remove(incident.channel_name)
            names.insert(0, incident.channel_name)
        for name in names:
            if not await self._db.run(_claim_name, incident.id, name):
                continue  # another incident holds this name
            try:
                channel_id = await self._chat.create_channel(name)
            except ChatError as exc:
                if exc.code != "name_taken":
                    raise
                found = await self._chat.find_channel(name)
                if found is None or found.creator != bot or found.is_archived:
                    continue
                if not await self._db.run(_unlinked, found.id):
                    continue
                channel_id = found.id  # ours, created before a crash: adopt it
            await self._db.run(self._channel_created, incident.id, name, channel_id)
            incident.channel_id, incident.channel_name = channel_id, name
            return
        raise ChatError("conversations.create", "no_free_channel_name")

    def _channel_created(
        self, session: Session, incident_id: int, name: str, channel_id: str
    ) -> None:
        incident = store.get(session, incident_id)
        assert incident is not None
        now = self._clock.now()
        incident.channel_id, incident.channel_name = channel_id, name
        store.append_event(
            session, incident, "channel_created", "firebreak", now, channel=channel_id, name=name
        )
        enqueue(session, incident.id, "topic", now)
        severity = self._runbooks.severities.levels[incident.severity]
        if severity.announce:
            earlier = store.get(session, incident.follow_up_of) if incident.follow_up_of else None
            text = self._runbooks.templates.render(
                "announce.j2",
                incident=incident,
                commander=incident.role("commander"),
                follow_up_of=earlier,
            )
            enqueue(session, incident.id, "post", now, channel=self._announce_channel, text=text)
        followup.link_channels(session, incident, now)

    async def _invite(self, incident: Incident) -> None:
        severity = self._runbooks.severities.levels[incident.severity]
        bot = await self._chat.bot_user_id()
        wanted = [incident.declared_by, incident.role("commander"), *severity.responders]
        # An incident opened from an alert is declared by "firebreak": nobody to invite.
        users = list(dict.fromkeys(u for u in wanted if u and u not in (bot, "firebreak")))
        channel = str(incident.channel_id)
        for user in users:
            try:
                await self._chat.invite(channel, user)
            except ChatError as exc:
                if exc.code in ("ratelimited", "request_timeout", "fatal_error", "internal_error"):
                    raise
                # A wrong responder ID in config must not block the incident forever.
                log.warning("could not invite %s to %s: %s", user, channel, exc.code)
                await self._db.run(
                    _note_invite_failure, incident.id, user, exc.code, self._clock.now()
                )
        await self._record(incident.id, invited=True)

    async def _post_checklist(self, incident: Incident) -> None:
        channel = str(incident.channel_id)
        if incident.checklist_ts == PENDING:
            # A post was attempted before; Slack may have taken it. Look first.
            for message in await self._chat.recent_messages(channel, limit=50):
                if CHECKLIST_MARKER in message.block_ids:
                    await self._record(incident.id, checklist_ts=message.ts)
                    incident.checklist_ts = message.ts
                    return
        await self._record(incident.id, checklist_ts=PENDING)
        text, blocks = views.checklist_message(incident, self._runbooks)
        ts = await self._chat.post(channel, text, blocks)
        await self._record(incident.id, checklist_ts=ts)
        incident.checklist_ts = ts

    async def _record(self, incident_id: int, **values: object) -> None:
        await self._db.run(_update, incident_id, values)


def _update(session: Session, incident_id: int, values: dict[str, object]) -> None:
    incident = store.get(session, incident_id)
    assert incident is not None
    for key, value in values.items():
        setattr(incident, key, value)
    if incident.setup_complete:
        incident.setup_error = None


def _claim_name(session: Session, incident_id: int, name: str) -> bool:
    incident = store.get(session, incident_id)
    assert incident is not None
    return incident.channel_name == name or store.claim_channel_name(session, incident, name)


def _unlinked(session: Session, channel_id: str) -> bool:
    return store.by_channel(session, channel_id) is None


def _setup_failed(session: Session, incident_id: int, step: str, code: str, now: datetime) -> None:
    incident = store.get(session, incident_id)
    assert incident is not None
    incident.setup_error = f"{step}: {code}"
    store.append_event(session, incident, "setup_failed", "firebreak", now, step=step, error=code)


def _note_invite_failure(
    session: Session, incident_id: int, user: str, code: str, now: datetime
) -> None:
    incident = store.get(session, incident_id)
    assert incident is not None
    store.append_event(session, incident, "invite_failed", "firebreak", now, user=user, error=code)
