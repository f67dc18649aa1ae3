"""The export saga: compile once, then write, upload, announce and archive, step by step.

The `Postmortem` row is the record. Each step is saved as it completes;
`run` does whatever is missing, so a Slack 5xx or a crash half-way leaves
the incident closed with its export pending, and the next run (a second
`/incident close`, or the periodic sweep) finishes it. The document is
compiled once and stored, so a retry exports the same text. A Slack call
that may have landed before the bot lost the answer (an upload, the
announcement) is marked `pending` first and looked up before it is redone,
so nothing is shared twice. One task of one replica runs an incident's
export at a time, under the incident's lease.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.gateway import ChatError, ChatGateway
from bot.incidents import privacy
from bot.incidents.lease import Lease, incident_lease
from bot.messages import Card
from bot.mrkdwn import channel_link, escape
from bot.postmortem import records
from bot.postmortem.compiler import compile_document
from bot.postmortem.history import ts_of
from bot.postmortem.render import PostmortemTemplate, as_json
from bot.yamlfile import RunbookError
from storage import postmortems as exports
from storage.db import Database
from storage.incidents import LeaseLost
from storage.models import Incident, Postmortem

log = logging.getLogger(__name__)

PENDING = "pending"
# Longer than the declare saga's: rendering a very long channel holds the event loop
# (and so the renewal) for a few seconds; a killed export still resumes within a minute.
LEASE_TTL = timedelta(seconds=60)
LEASE_RENEW_SECONDS = 10.0
MARKER_PREFIX = "postmortem-"


def filename(incident: Incident, suffix: str = ".md") -> str:
    return f"postmortem-{incident.channel_name or f'incident-{incident.id}'}{suffix}"


@dataclass(frozen=True)
class ExportResult:
    row: Postmortem | None = None
    error: str | None = None  # the step that failed and Slack's code, for the user
    busy: bool = False  # another task or replica is exporting it now
    earlier: bool = False  # it was exported by an earlier run; this one did nothing

    @property
    def done(self) -> bool:
        return self.row is not None and self.row.status == exports.EXPORTED


class PostmortemExport:
    def __init__(
        self,
        *,
        db: Database,
        chat: ChatGateway,
        clock: Clock,
        template: PostmortemTemplate,
        announce_channel: str,
        folder: Path,
        archive_on_close: bool,
    ) -> None:
        self._db = db
        self._chat = chat
        self._clock = clock
        self._template = template
        self._announce_channel = announce_channel
        self._folder = folder
        self._archive_on_close = archive_on_close

    async def run(self, incident_id: int) -> ExportResult:
        holder = f"postmortem:{uuid.uuid4().hex[:12]}"
        async with incident_lease(
            self._db,
            self._clock,
            incident_id,
            holder,
            ttl=LEASE_TTL,
            renew_seconds=LEASE_RENEW_SECONDS,
        ) as lease:
            if lease is None:
                return ExportResult(busy=True)
            try:
                return await self._export(incident_id, lease)
            except LeaseLost:
                log.warning("export of incident %s: lost the lease to another holder", incident_id)
                return ExportResult(busy=True)

    async def _export(self, incident_id: int, lease: Lease) -> ExportResult:
        """Every step not yet recorded as done, in order; a failure leaves the rest."""
        step = "compiling the post-mortem"
        row: Postmortem | None = None
        try:
            incident, events, row = await self._db.run(records.load, incident_id)
            assert row is not None, f"incident {incident_id} has no export record"
            if row.status == exports.EXPORTED:
                return ExportResult(row, earlier=True)
            if not row.markdown:
                listening = await self._db.run(records.listening, incident_id, row.created_at)
                document = await compile_document(
                    self._chat,
                    incident,
                    events,
                    generated_at=row.created_at,
                    latest=ts_of(incident.closed_at or row.created_at),
                    listening=listening,
                )
                markdown = self._template.markdown(document)
                await self._save(lease, row, markdown=markdown, document=document)
            step = "writing the file"
            if not row.written_path or not Path(row.written_path).exists():
                await self._save(lease, row, written_path=str(self._write(incident, row)))
            if incident.channel_id and (not row.file_id or row.file_id == PENDING):
                step = "uploading it to the incident channel"
                await self._upload(lease, incident, row)
            if privacy.broadcasts(incident) and (
                not row.announced_ts or row.announced_ts == PENDING
            ):
                step = "announcing it"
                await self._announce(lease, incident, row)
            if self._archive_on_close and incident.channel_id:
                step = "archiving the channel"
                await self._chat.archive(incident.channel_id)
            await self._save(
                lease, row, status=exports.EXPORTED, exported_at=self._clock.now(), last_error=None
            )
            return ExportResult(row)
        except (ChatError, OSError, RunbookError) as exc:
            code = exc.code if isinstance(exc, ChatError) else type(exc).__name__
            log.warning(
                "post-mortem export of incident %s stopped while %s: %s", incident_id, step, exc
            )
            if row is not None:
                await self._save(lease, row, last_error=f"{step}: {code}"[:255])
            return ExportResult(row, error=f"{step}: `{code}`")

    def _write(self, incident: Incident, row: Postmortem) -> Path:
        """The Markdown and its JSON form, side by side, each replaced atomically."""
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._folder / filename(incident)
        for target, text in (
            (path, row.markdown),
            (path.with_suffix(".json"), as_json(row.document)),
        ):
            partial = target.with_name(target.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(target)
        return path

    async def _upload(self, lease: Lease, incident: Incident, row: Postmortem) -> None:
        channel, name = str(incident.channel_id), filename(incident)
        if row.file_id == PENDING:  # tried before: Slack may have taken it
            bot = await self._chat.bot_user_id()
            async for page in self._chat.history(channel, page_size=100):
                for message in page:
                    found = [f.id for f in message.files if f.name == name]
                    if message.user == bot and found:
                        await self._save(lease, row, file_id=found[0])
                        return
                break  # the upload would be among the newest messages
        await self._save(lease, row, file_id=PENDING)
        file_id = await self._chat.upload_file(
            channel,
            name,
            row.markdown,
            title=f"Post-mortem: {escape(incident.title)}",
            comment=":memo: The post-mortem draft, compiled from this channel and the "
            "incident's log. Fill in the ✍️ sections.",
        )
        await self._save(lease, row, file_id=file_id)

    async def _announce(self, lease: Lease, incident: Incident, row: Postmortem) -> None:
        marker = f"{MARKER_PREFIX}{incident.id}"
        if row.announced_ts == PENDING:
            for message in await self._chat.recent_messages(self._announce_channel, limit=50):
                if marker in message.block_ids:
                    await self._save(lease, row, announced_ts=message.ts)
                    return
        await self._save(lease, row, announced_ts=PENDING)
        where = channel_link(incident.channel_id, incident.channel_name)
        title = escape(incident.title)
        text = f":memo: The post-mortem of {where} ({escape(incident.severity)}) *{title}* is ready"
        if row.file_id and row.file_id != PENDING:
            url = await self._chat.file_permalink(row.file_id)
            if url:
                text += f": <{url}|{escape(filename(incident))}>"
        ts = await self._chat.post(self._announce_channel, Card.text(text, marker))
        await self._save(lease, row, announced_ts=ts)

    async def _save(self, lease: Lease, row: Postmortem, **values: Any) -> None:
        """Record a step; refused (`LeaseLost`) if another holder has the lease now."""
        lease.check()
        await self._db.run(exports.save, row.incident_id, values, lease.token)
        for key, value in values.items():
            setattr(row, key, value)
