"""The post-mortem service: preview any time, close once, export until it lands.

`/incident postmortem` compiles the draft and shows it to the requester;
`/incident close` records the close (once), then runs the export saga;
the sweep calls `resume_pending_exports` so an export Slack interrupted
finishes on its own; the CLI prints a stored or freshly compiled one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot import commands as c
from bot import logs
from bot.actions import ActionService
from bot.context import Context, Service
from bot.errors import UserError
from bot.incidents.service import IncidentService, Request
from bot.mrkdwn import escape, mention
from bot.postmortem import records
from bot.postmortem.compiler import compile_document
from bot.postmortem.export import ExportResult, PostmortemExport, filename
from bot.postmortem.history import ts_of
from bot.postmortem.render import PostmortemTemplate, as_json
from storage import postmortems as exports

__all__ = ["CloseOutcome", "PostmortemService", "resolution_prompt"]

log = logging.getLogger(__name__)

# A preview longer than Slack's recommended message length is shared as a file.
PREVIEW_INLINE_MAX = 4000
FORMATS = ("md", "json")


def resolution_prompt(*, resolved: bool) -> str:
    """What `close` says when the resolution summary is missing."""
    if resolved:
        return (
            "This incident is resolved, but nobody said how. Give the resolution summary, "
            "and Firebreak records it, closes the incident and exports the post-mortem."
        )
    return (
        "This incident is not resolved yet. Say how it was resolved, and Firebreak "
        "resolves it, closes it and exports the post-mortem."
    )


@dataclass(frozen=True)
class CloseOutcome:
    text: str
    needs_resolution: bool = False  # ask the requester how it was resolved (a modal)
    resolved: bool = False  # … in its form for a resolved incident that lacks a summary


class PostmortemService(Service):
    def __init__(
        self,
        context: Context,
        *,
        incidents: IncidentService,
        actions: ActionService,
        announce_channel: str,
        postmortem_dir: Path,
        archive_on_close: bool,
    ) -> None:
        super().__init__(context)
        self._incidents = incidents
        self._actions = actions
        self._announce_channel = announce_channel
        self._archive_on_close = archive_on_close
        self._template = PostmortemTemplate(context.runbooks.templates.folder)
        self._export = PostmortemExport(
            db=context.db,
            chat=context.chat,
            clock=context.clock,
            template=self._template,
            announce_channel=announce_channel,
            folder=postmortem_dir,
            archive_on_close=archive_on_close,
        )

    async def preview(self, request: Request) -> str:
        """Show the draft as it stands: ephemeral, or as a file in the channel when long."""
        incident_id = await self._db.run(records.incident_for_channel, request.channel_id)
        incident, events, _ = await self._db.run(records.load, incident_id)
        now = self._clock.now()
        listening = await self._db.run(records.listening, incident_id, now)
        document = await compile_document(
            self._chat, incident, events, generated_at=now, listening=listening
        )
        markdown = self._template.markdown(document)
        if len(markdown) <= PREVIEW_INLINE_MAX:
            text = f"*Draft post-mortem* (only you see this):\n```\n{markdown}```"
            await self._chat.post_ephemeral(request.channel_id, request.actor, text)
            return ""
        await self._chat.upload_file(
            request.channel_id,
            filename(incident, "-draft.md"),
            markdown,
            title=f"Draft post-mortem: {escape(incident.title)}",
            comment=f"Draft post-mortem, asked for by {mention(request.actor)}. "
            "`/incident close` compiles the final one.",
        )
        lines = markdown.count("\n")
        return f"The draft is long ({lines} lines), so it is shared as a file in this channel."

    async def close(self, request: Request) -> CloseOutcome:
        """Close a resolved incident and export its post-mortem; a repeat resumes, never redoes."""
        start = await self._db.run(
            records.begin_close, request.channel_id, request.actor, self._clock.now()
        )
        if start.needs_resolution:
            return CloseOutcome(
                resolution_prompt(resolved=start.resolved),
                needs_resolution=True,
                resolved=start.resolved,
            )
        logs.incident_id.set(start.incident_id)
        # Before the export, so the post-mortem shows the retirements.
        await self._actions.retire_open(start.incident_id, request.actor)
        result = await self._export.run(start.incident_id)
        return CloseOutcome(self._close_text(result, start.closed_before))

    async def resolve_and_close(self, summary: str, request: Request) -> str:
        """The resolution modal's submission: resolve with the summary (or record it, if
        the incident is resolved already), then close."""
        resolved = await self._incidents.resolve(c.Resolve(summary), request)
        outcome = await self.close(request)
        return "\n".join(text for text in (resolved, outcome.text) if text)

    async def resume_pending_exports(self) -> None:
        """Finish exports a failure interrupted (periodic sweep and start-up)."""
        for incident_id in await self._db.run(exports.pending_exports):
            result = await self._export.run(incident_id)
            if result.error:
                log.warning(
                    "post-mortem of incident %s still pending: %s", incident_id, result.error
                )

    async def render(self, incident_ref: str, fmt: str) -> str:
        """The post-mortem as `md` or `json`: the stored one, else compiled now."""
        if fmt not in FORMATS:
            raise UserError(f"Unknown format `{fmt}`; use md or json.")
        incident_id = await self._db.run(records.find_incident, incident_ref)
        if incident_id is None:
            raise UserError(f"No incident `{incident_ref}` (give its number or channel name).")
        incident, events, row = await self._db.run(records.load, incident_id)
        if row is not None and row.markdown:
            return row.markdown if fmt == "md" else as_json(row.document)
        now = self._clock.now()
        document = await compile_document(
            self._chat,
            incident,
            events,
            generated_at=now,
            latest=ts_of(incident.closed_at) if incident.closed_at else None,
            listening=await self._db.run(records.listening, incident_id, now),
        )
        return self._template.markdown(document) if fmt == "md" else as_json(document)

    def _close_text(self, result: ExportResult, closed_before: datetime | None) -> str:
        if result.busy:
            return "The post-mortem of this incident is being exported right now."
        if result.error or result.row is None:
            return (
                ":warning: The incident is closed, but exporting the post-mortem stopped while "
                f"{result.error}. Firebreak retries on its own and never exports twice; "
                "`/incident close` retries now."
            )
        name = f"`{Path(result.row.written_path or '').name}`"
        if result.earlier and closed_before is not None:
            return (
                f"This incident was already closed on {closed_before:%Y-%m-%d %H:%M} UTC and "
                f"its post-mortem {name} exported then. Nothing was exported again."
            )
        archived = " The channel is archived." if self._archive_on_close else ""
        where = (
            f"announced in #{self._announce_channel}"
            if result.row.announced_ts
            else f"kept out of #{self._announce_channel} (a private incident)"
        )
        return (
            f":white_check_mark: Closed. The post-mortem {name} is shared in this channel "
            f"and {where}.{archived}"
        )
