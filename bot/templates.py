"""Message templates (Jinja2, under `runbooks/templates/`).

Rendered in a sandbox with every inserted value escaped for mrkdwn, so a
title such as `{{ 7*7 }} <!channel>` is shown as typed: it is data, never
template source and never a ping. Values that are already safe markup
(mentions, channel links) are `Mrkdwn` instances and pass through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot import mrkdwn
from bot.durations import format_duration
from bot.yamlfile import RunbookError

# Every template the code renders; start-up fails if one is missing.
MESSAGE_TEMPLATES = (
    "help.j2",
    "topic.j2",
    "announce.j2",
    "checklist_intro.j2",
    "severity_changed.j2",
    "escalated.j2",
    "status_changed.j2",
    "update.j2",
    "role_assigned.j2",
    "note.j2",
    "resolved.j2",
    "list.j2",
    "alert_offer.j2",
    "alert_source.j2",
    "alert_changed.j2",
    "paged.j2",
    "external_failed.j2",
    "paging_acknowledged.j2",
    "paging_resolved.j2",
    "oncall.j2",
    "statuspage_preview.j2",
    "statuspage_published.j2",
    "statuspage_investigating.j2",
    "statuspage_identified.j2",
    "statuspage_monitoring.j2",
    "statuspage_resolved.j2",
    "summary.j2",
    "response_overdue.j2",
)


class Templates:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            finalize=mrkdwn.escape,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self._env.filters.update(
            mention=mrkdwn.mention,
            channel=mrkdwn.channel_link,
            user_text=mrkdwn.user_text,
            duration=format_duration,
            utc=lambda d: d.strftime("%Y-%m-%d %H:%M UTC"),
        )

    def validate(self) -> None:
        """Compile every template now, so a typo fails start-up with file and line."""
        for name in MESSAGE_TEMPLATES:
            path = self.folder / name
            if not path.exists():
                raise RunbookError(path, None, "template is missing")
            try:
                self._env.get_template(name)
            except TemplateSyntaxError as exc:
                raise RunbookError(path, exc.lineno, exc.message or "syntax error") from exc

    def render(self, name: str, **context: Any) -> str:
        try:
            return self._env.get_template(name).render(**context).strip()
        except TemplateError as exc:
            raise RunbookError(self.folder / name, getattr(exc, "lineno", None), str(exc)) from exc
