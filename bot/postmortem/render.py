"""Rendering the post-mortem document as Markdown, through an operator's template.

The template (`postmortem.md.j2` in the runbooks' templates folder) runs in
Jinja2's immutable sandbox, and every value it prints is escaped for
Markdown on the way out (`finalize`): people's messages are data, never
template source, and never become links, images or HTML. The template is
compiled at start-up so a typo stops the bot with the file and line.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.durations import format_duration
from bot.postmortem.markdown import escape, link
from bot.yamlfile import RunbookError

TEMPLATE = "postmortem.md.j2"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _clock(value: str) -> str:
    return value[11:16]  # HH:MM of the document's `YYYY-MM-DDTHH:MM:SSZ`, once per line


def _utc(value: str | None) -> str:
    return "not recorded" if value is None else _parse(value).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return format_duration(timedelta(seconds=seconds)) if seconds >= 1 else "under a second"


def days(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline cut into UTC days (one group when the incident fits in a day)."""
    groups: list[dict[str, Any]] = []
    for entry in timeline:
        day = entry["at"][:10]
        if not groups or groups[-1]["date"] != day:
            groups.append({"date": day, "entries": []})
        groups[-1]["entries"].append(entry)
    return groups


class PostmortemTemplate:
    def __init__(self, folder: Path) -> None:
        self.path = folder / TEMPLATE
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            finalize=escape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self._env.filters.update(clock=_clock, utc=_utc, duration=_duration, link=link)
        if not self.path.exists():
            raise RunbookError(self.path, None, "template is missing")
        try:
            self._env.get_template(TEMPLATE)
        except TemplateSyntaxError as exc:
            raise RunbookError(self.path, exc.lineno, exc.message or "syntax error") from exc

    def markdown(self, document: dict[str, Any]) -> str:
        try:
            template = self._env.get_template(TEMPLATE)
            text = template.render(**document, days=days(document["timeline"]))
        except TemplateError as exc:
            raise RunbookError(self.path, getattr(exc, "lineno", None), str(exc)) from exc
        return text.strip() + "\n"


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
