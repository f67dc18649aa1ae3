"""How an incident looks in its channel: topic, checklist card, list. Pure functions."""

from __future__ import annotations

from datetime import datetime

from bot.messages import Card, Checkboxes, Choice, Part, Section
from bot.mrkdwn import escape, truncate_mrkdwn
from bot.runbooks import Runbooks
from storage.models import Incident

TOPIC_MAX = 250  # Slack's cap on channel topics
CHECKLIST_ACTION_PREFIX = "checklist:"
CHECKLIST_MARKER = "checklist-intro"  # finds the checklist message again in history


def topic(incident: Incident, runbooks: Runbooks) -> str:
    text = runbooks.templates.render(
        "topic.j2", incident=incident, commander=incident.role("commander")
    )
    return truncate_mrkdwn(" ".join(text.split()), TOPIC_MAX)


def checklist_message(incident: Incident, runbooks: Runbooks) -> Card:
    """The pinned checklist: an intro, then each phase with its boxes."""
    severity = runbooks.severities.levels[incident.severity]
    intro = runbooks.templates.render("checklist_intro.j2", incident=incident, severity=severity)
    parts: list[Part] = [Section(intro, marker=CHECKLIST_MARKER)]
    for phase_index, phase in enumerate(_phases(incident)):
        items = [i for i in incident.checklist if i.phase == phase]
        done = sum(1 for i in items if i.checked)
        heading = f"*{escape(phase)}* ({done}/{len(items)})"
        parts.append(Section(heading, marker=f"checklist-phase:{phase_index}"))
        choices = tuple(Choice(i.key, i.text, i.checked, i.checked_by, i.checked_at) for i in items)
        where = f"{CHECKLIST_ACTION_PREFIX}{phase_index}"
        parts.append(Checkboxes(where, choices, marker=where))
    return Card(tuple(parts))


def _phases(incident: Incident) -> list[str]:
    seen: list[str] = []
    for item in incident.checklist:
        if item.phase not in seen:
            seen.append(item.phase)
    return seen


def incident_list(incidents: list[Incident], runbooks: Runbooks, now: datetime) -> str:
    shown = 20
    rows = [
        {"incident": i, "age": now - i.declared_at, "commander": i.role("commander")}
        for i in incidents[:shown]
    ]
    return runbooks.templates.render("list.j2", rows=rows, hidden=max(0, len(incidents) - shown))
