"""Severity levels and phased checklists, loaded from `runbooks/`."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.durations import parse_duration
from bot.yamlfile import Node, RunbookError, load_mapping

_LEVEL = re.compile(r"^P[0-9]$")
_KEY = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")


@dataclass(frozen=True)
class Severity:
    level: str  # "P0"
    alias: str  # "SEV1"
    rank: int  # 0 is the most severe
    name: str
    description: str
    examples: tuple[str, ...]
    response_time: str  # as the playbook says it: "Within 15 minutes"
    response_target: timedelta  # the duration in it, which reminders enforce
    update_cadence: timedelta | None
    announce: bool
    escalate: bool
    page: bool  # page the service's on-call in PagerDuty when declared at this level
    responders: tuple[str, ...]
    checklist: tuple[str, ...]  # glob patterns over item keys

    def label(self) -> str:
        return f"{self.level} ({self.alias}, {self.name})"


@dataclass(frozen=True)
class ChecklistItemSpec:
    key: str
    phase: str
    text: str


@dataclass(frozen=True)
class SeverityTable:
    levels: dict[str, Severity]
    default: Severity
    phases: tuple[str, ...]
    items: tuple[ChecklistItemSpec, ...]

    def lookup(self, text: str) -> Severity | None:
        """`P1`, `p1`, `SEV2` and `sev2` all name the same level."""
        wanted = text.strip().upper()
        return next((s for s in self.levels.values() if wanted in (s.level, s.alias)), None)

    def names(self) -> str:
        ordered = sorted(self.levels.values(), key=lambda s: s.rank)
        return f"{ordered[0].level}–{ordered[-1].level} or {ordered[0].alias}–{ordered[-1].alias}"

    def checklist_for(self, severity: Severity) -> list[ChecklistItemSpec]:
        return [i for i in self.items if _matches(i.key, severity.checklist)]


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_severities(root: Path) -> SeverityTable:
    phases, items = _load_checklists(root / "checklists")
    path = root / "severities.yml"
    doc = load_mapping(path)
    table = doc.require("severities", dict)
    levels: dict[str, Severity] = {}
    for level, spec in table.items():
        if not _LEVEL.match(str(level)) or not isinstance(spec, Node):
            raise RunbookError(path, getattr(spec, "line", doc.line), f"bad severity `{level}`")
        levels[level] = _severity(level, spec, items)
    if not levels:
        raise doc.error("no severities defined")
    aliases = [s.alias for s in levels.values()]
    if len(set(aliases)) != len(aliases):
        raise doc.error("two severities share an alias")
    default = levels.get(doc.expect("default", str, min(levels)))
    if default is None:
        raise doc.error(f"`default` must be one of {', '.join(levels)}")
    return SeverityTable(levels, default, phases, items)


def _severity(level: str, spec: Node, items: tuple[ChecklistItemSpec, ...]) -> Severity:
    cadence_text = str(spec.require("update_cadence", (str, int)))
    try:
        cadence = None if cadence_text.lower() == "none" else parse_duration(cadence_text)
    except ValueError as exc:
        raise spec.error(f"update_cadence: {exc}") from exc
    response_time = spec.require("response_time")
    patterns = tuple(spec.require("checklist", list))
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(i.key, str(pattern)) for i in items):
            raise spec.error(f"checklist pattern `{pattern}` matches no checklist item")
    alias = spec.require("alias")
    if not re.match(r"^SEV[0-9]$", alias):
        raise spec.error(f"alias `{alias}` must look like SEV1")
    responders = tuple(spec.expect("responders", list, []))
    for user in responders:
        if not re.match(r"^[UW][A-Z0-9]+$", str(user)):
            raise spec.error(f"responder `{user}` is not a Slack user ID")
    return Severity(
        level=level,
        alias=alias,
        rank=int(level[1:]),
        name=spec.require("name"),
        description=spec.require("description"),
        examples=tuple(str(e) for e in spec.expect("examples", list, [])),
        response_time=response_time,
        response_target=response_target(response_time, spec),
        update_cadence=cadence,
        announce=bool(spec.expect("announce", bool, True)),
        escalate=bool(spec.expect("escalate", bool, False)),
        page=bool(spec.expect("page", bool, False)),
        responders=responders,
        checklist=tuple(str(p) for p in patterns),
    )


_WITHIN = re.compile(r"(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\b", re.I)


def response_target(text: str, spec: Node) -> timedelta:
    """The duration a `response_time` names: "Immediate (within 15 minutes)" → 15m."""
    found = _WITHIN.search(text)
    if found is None:
        raise spec.error(f"response_time `{text}` names no duration, e.g. `Within 15 minutes`")
    return parse_duration(f"{found[1]}{found[2][0].lower()}")


def _load_checklists(folder: Path) -> tuple[tuple[str, ...], tuple[ChecklistItemSpec, ...]]:
    """Phases in file-name order (`1-detection-triage.yml` first)."""
    phases: list[str] = []
    items: list[ChecklistItemSpec] = []
    seen: set[str] = set()
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise RunbookError(folder, None, "no checklist files (*.yml)")
    for path in files:
        doc = load_mapping(path)
        phase = doc.require("phase")
        phases.append(phase)
        for entry in doc.require("items", list):
            if not isinstance(entry, Node):
                raise doc.error("each checklist item must be a mapping with `key` and `text`")
            key = entry.require("key")
            text = entry.require("text")
            if not _KEY.match(key):
                raise entry.error(f"item key `{key}` must be lowercase words joined by . or -")
            if key in seen:
                raise entry.error(f"duplicate checklist item key `{key}`")
            if len(text) > 75:
                raise entry.error("item text is longer than 75 characters (Slack option limit)")
            seen.add(key)
            items.append(ChecklistItemSpec(key, phase, text))
    return tuple(phases), tuple(items)
