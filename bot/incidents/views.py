"""How an incident looks in Slack: topic, checklist message, list. Pure functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.gateway import Blocks
from bot.mrkdwn import escape, truncate
from bot.runbooks import Runbooks
from storage.models import Incident

TOPIC_MAX = 250  # Slack's cap on channel topics
CHECKBOX_OPTIONS_MAX = 10  # Slack's cap on options in one checkboxes element
CHECKLIST_ACTION_PREFIX = "checklist:"


def topic(incident: Incident, runbooks: Runbooks) -> str:
    text = runbooks.templates.render(
        "topic.j2", incident=incident, commander=incident.role("commander")
    )
    return truncate(" ".join(text.split()), TOPIC_MAX)


def checklist_message(incident: Incident, runbooks: Runbooks) -> tuple[str, Blocks]:
    """The pinned checklist: an intro, then each phase with its boxes.

    A checkboxes element holds at most 10 options, so a longer phase spans
    several elements, each in its own actions block.
    """
    severity = runbooks.severities.levels[incident.severity]
    intro = runbooks.templates.render("checklist_intro.j2", incident=incident, severity=severity)
    blocks: Blocks = [{"type": "section", "block_id": "checklist-intro", "text": _mrkdwn(intro)}]
    for phase_index, phase in enumerate(_phases(incident)):
        items = [i for i in incident.checklist if i.phase == phase]
        done = sum(1 for i in items if i.checked)
        blocks.append(
            {
                "type": "section",
                "block_id": f"checklist-phase:{phase_index}",
                "text": _mrkdwn(f"*{escape(phase)}* ({done}/{len(items)})"),
            }
        )
        for chunk_index in range(0, len(items), CHECKBOX_OPTIONS_MAX):
            chunk = items[chunk_index : chunk_index + CHECKBOX_OPTIONS_MAX]
            element: dict[str, Any] = {
                "type": "checkboxes",
                "action_id": f"{CHECKLIST_ACTION_PREFIX}{phase_index}:{chunk_index}",
                "options": [_option(i) for i in chunk],
            }
            checked = [_option(i) for i in chunk if i.checked]
            if checked:
                element["initial_options"] = checked
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"checklist:{phase_index}:{chunk_index}",
                    "elements": [element],
                }
            )
    total = len(incident.checklist)
    done = sum(1 for i in incident.checklist if i.checked)
    return f"Checklist for {escape(incident.title)}: {done}/{total} done", blocks


def _phases(incident: Incident) -> list[str]:
    seen: list[str] = []
    for item in incident.checklist:
        if item.phase not in seen:
            seen.append(item.phase)
    return seen


def _option(item: Any) -> dict[str, Any]:
    option: dict[str, Any] = {
        "text": {"type": "plain_text", "text": item.text},
        "value": item.key,
    }
    if item.checked and item.checked_by and item.checked_at:
        option["description"] = _mrkdwn(
            f"<@{item.checked_by}> · {item.checked_at.strftime('%H:%M UTC')}"
        )
    return option


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": truncate(text, 3000)}


def incident_list(incidents: list[Incident], runbooks: Runbooks, now: datetime) -> str:
    shown = 20
    rows = [
        {"incident": i, "age": now - i.declared_at, "commander": i.role("commander")}
        for i in incidents[:shown]
    ]
    return runbooks.templates.render("list.j2", rows=rows, hidden=max(0, len(incidents) - shown))
