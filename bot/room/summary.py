"""`/incident summary`: the read-in for someone arriving in the middle of an incident.

Everything comes from the incident row and its event log: severity, status, roles,
the impact so far, the last update, what was tried (runbook diagnostics and
mitigations, with their results) and the open checklist items of the current phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.incidents.rules import ROLES
from bot.postmortem.action_trail import describe_action
from bot.postmortem.history import Names
from bot.postmortem.markdown import typed_to_plain
from bot.runbooks import Runbooks
from storage.models import ChecklistItem, Event, Incident

TRIED = ("diagnostic", "mitigation_executed")
TRIED_SHOWN = 8  # the latest ones; the rest are in the timeline


@dataclass(frozen=True)
class Tried:
    at: datetime
    text: str
    ok: bool


def current_phase(incident: Incident, phases: tuple[str, ...]) -> tuple[str, list[ChecklistItem]]:
    """The first phase with an unticked item, and its unticked items ("" when all done)."""
    for phase in phases:
        open_items = [i for i in incident.checklist if i.phase == phase and not i.checked]
        if open_items:
            return phase, open_items
    return "", []


def tried(events: list[Event], names: Names) -> list[Tried]:
    """Diagnostics run and mitigations executed, each a sentence with its result."""
    found: list[Tried] = []
    for event in events:
        if event.type not in TRIED:
            continue
        payload: dict[str, Any] = event.payload or {}

        def text(key: str, p: dict[str, Any] = payload) -> str:
            return typed_to_plain(str(p.get(key) or ""), names)

        described = describe_action(event.type, event.actor, payload, names, text)
        if described is not None:
            found.append(Tried(event.at, described[1], bool(payload.get("ok"))))
    return found[-TRIED_SHOWN:]


def impact(events: list[Event], incident: Incident) -> str:
    """The impact as last stated (an update's impact field), else the description."""
    for event in reversed(events):
        stated = (event.payload or {}).get("impact")
        if event.type in ("update", "declared") and stated:
            return str(stated)
    return incident.description


def render(
    runbooks: Runbooks, incident: Incident, events: list[Event], names: Names, now: datetime
) -> str:
    phase, open_items = current_phase(incident, runbooks.severities.phases)
    return runbooks.templates.render(
        "summary.j2",
        incident=incident,
        severity=runbooks.severities.levels[incident.severity],
        roles=[(role, incident.role(role)) for role in ROLES],
        impact=impact(events, incident),
        tried=tried(events, names),
        phase=phase,
        open_items=open_items,
        since=now - incident.declared_at,
        last_update_ago=(now - incident.last_update_at) if incident.last_update_at else None,
    )
