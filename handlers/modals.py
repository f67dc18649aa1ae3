"""Firebreak's modals (Slack views): declare, post an update, resolve and close.

Each modal's view and the parsing of its submission sit together, so the block IDs
a view names and the ones its parser reads cannot drift apart. Parsers turn a
submission into the bot's commands (or per-field errors to show in the modal), and
read defensively: a client may send anything in any field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from bot.commands import CommandError, Declare, PostUpdate, clean, validate_title
from bot.incidents.limits import TEXT_MAX, over_limit
from bot.incidents.rules import STATUSES, TITLE_MAX
from bot.postmortem.service import resolution_prompt
from bot.severities import SeverityTable

DECLARE_CALLBACK = "declare_incident"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


PRIVATE_OPTION = {
    "text": {"type": "plain_text", "text": "Private (security) incident"},
    "description": {
        "type": "plain_text",
        "text": "Private channel; the broadcast channel only hears that one was declared",
    },
    "value": "private",
}


def declare_form(
    severities: SeverityTable,
    severity: str | None,
    channel_id: str,
    services: Sequence[str] = (),
    private: bool = False,
) -> dict[str, Any]:
    """The modal; `services` (the configured ones) fill an optional service select, which
    the triage at declare uses to pick the service to diagnose."""
    options = [
        {
            "text": {"type": "plain_text", "text": f"{s.level} · {s.name}"},
            "description": {"type": "plain_text", "text": s.description[:75]},
            "value": s.level,
        }
        for s in sorted(severities.levels.values(), key=lambda s: s.rank)
    ]
    chosen = next(o for o in options if o["value"] == (severity or severities.default.level))
    return {
        "type": "modal",
        "callback_id": DECLARE_CALLBACK,
        "private_metadata": json.dumps({"channel": channel_id}),
        "title": {"type": "plain_text", "text": "Declare an incident"},
        "submit": {"type": "plain_text", "text": "Declare"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _input("title", "Title", {"type": "plain_text_input", "max_length": TITLE_MAX}),
            _input(
                "severity",
                "Severity",
                {"type": "static_select", "options": options, "initial_option": chosen},
            ),
            _input(
                "description",
                "What is happening?",
                {"type": "plain_text_input", "multiline": True, "max_length": TEXT_MAX},
                optional=True,
            ),
            _input("commander", "Incident commander", {"type": "users_select"}, optional=True),
            *_service_select(services),
            _input(
                "private",
                "Security",
                {
                    "type": "checkboxes",
                    "options": [PRIVATE_OPTION],
                    **({"initial_options": [PRIVATE_OPTION]} if private else {}),
                },
                optional=True,
            ),
        ],
    }


SERVICE_OPTIONS_MAX = 100  # a static_select's limit


def _service_select(services: Sequence[str]) -> list[dict[str, Any]]:
    options = [
        {"text": {"type": "plain_text", "text": name[:75]}, "value": name}
        for name in list(services)[:SERVICE_OPTIONS_MAX]
    ]
    if not options:
        return []
    element = {"type": "static_select", "options": options}
    return [_input("service", "Affected service", element, optional=True)]


def _input(
    block_id: str, label: str, element: dict[str, Any], optional: bool = False
) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {**element, "action_id": block_id},
    }


def parse_declare_form(
    values: dict[str, Any], severities: SeverityTable, services: Sequence[str] = ()
) -> tuple[Declare | None, dict[str, str]]:
    """The command, or per-field errors to show in the modal."""
    errors: dict[str, str] = {}
    title = ""
    try:
        title = validate_title(_string(_entry(values, "title"), "value"))
    except CommandError as exc:
        errors["title"] = str(exc)
    level = _string(_entry(values, "severity"), "selected_option", "value")
    severity = severities.lookup(level) if level else None
    if severity is None:
        errors["severity"] = f"Choose a severity ({severities.names()})."
    description = clean(_string(_entry(values, "description"), "value")).strip()
    if problem := over_limit(description):
        errors["description"] = problem
    commander = _string(_entry(values, "commander"), "selected_user") or None
    if commander is not None and not _USER_ID.match(commander):
        errors["commander"] = "Choose a person from the list."
    service = _string(_entry(values, "service"), "selected_option", "value") or None
    if service is not None and service not in services:
        errors["service"] = "Choose a service from the list."
    if errors or severity is None:
        return None, errors
    return Declare(
        severity.level, title, description, commander, service=service, private=_ticked(values)
    ), {}


def _ticked(values: dict[str, Any]) -> bool:
    """The private checkbox: ticked when its selection holds the `private` option."""
    selected = _entry(values, "private").get("selected_options")
    return isinstance(selected, list) and any(
        isinstance(o, dict) and o.get("value") == "private" for o in selected
    )


def _entry(values: Any, block: str) -> dict[str, Any]:
    """One input's state, `values[block][block]` (block and action IDs are the same here),
    or {} when a client sent something else in its place."""
    outer = values.get(block) if isinstance(values, dict) else None
    inner = outer.get(block) if isinstance(outer, dict) else None
    return inner if isinstance(inner, dict) else {}


def _string(entry: dict[str, Any], *keys: str) -> str:
    """The text at entry[k1][k2]…, or "" when it is missing or not text."""
    value: Any = entry
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


UPDATE_CALLBACK = "post_update"


def update_form(incident_id: int, channel_id: str, status: str) -> dict[str, Any]:
    """The nudge's "Post update" modal, prefilled with the current status: the seeds'
    update (status, actions taken, next steps; the bot adds when the next is due)."""
    options = [{"text": {"type": "plain_text", "text": s}, "value": s} for s in STATUSES]
    current = next(o for o in options if o["value"] == status)
    text = {"type": "plain_text_input", "multiline": True, "max_length": TEXT_MAX}
    return {
        "type": "modal",
        "callback_id": UPDATE_CALLBACK,
        "private_metadata": json.dumps({"incident": incident_id, "channel": channel_id}),
        "title": {"type": "plain_text", "text": "Post an update"},
        "submit": {"type": "plain_text", "text": "Post"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _input(
                "status",
                "Status",
                {"type": "static_select", "options": options, "initial_option": current},
            ),
            _input("update", "Actions taken", text),
            _input("next_steps", "Next steps", text, optional=True),
            _input("impact", "Impact so far", text, optional=True),
        ],
    }


def parse_update_form(values: dict[str, Any]) -> tuple[str, PostUpdate | None, dict[str, str]]:
    """(status, the update, field errors)."""
    status = _string(_entry(values, "status"), "selected_option", "value")
    said = {
        block: clean(_string(_entry(values, block), "value")).strip()
        for block in ("update", "next_steps", "impact")
    }
    errors: dict[str, str] = {}
    if status not in STATUSES:
        errors["status"] = f"Choose one of: {', '.join(STATUSES)}."
    if not said["update"]:
        errors["update"] = "Write what was done."
    for block, text in said.items():
        if block not in errors and (problem := over_limit(text)):
            errors[block] = problem
    if errors:
        return status, None, errors
    return status, PostUpdate(said["update"], said["next_steps"], said["impact"]), {}


RESOLUTION_CALLBACK = "postmortem_resolve_close"
SUMMARY_BLOCK = "summary"


def resolution_form(channel_id: str, *, resolved: bool = False) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": RESOLUTION_CALLBACK,
        "private_metadata": json.dumps({"channel": channel_id}),
        "title": {"type": "plain_text", "text": "Close" if resolved else "Resolve and close"},
        "submit": {"type": "plain_text", "text": "Close" if resolved else "Resolve & close"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": resolution_prompt(resolved=resolved)},
            },
            {
                "type": "input",
                "block_id": SUMMARY_BLOCK,
                "label": {"type": "plain_text", "text": "Resolution summary"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": SUMMARY_BLOCK,
                    "multiline": True,
                    "max_length": TEXT_MAX,
                },
            },
        ],
    }


def parse_resolution(view: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The channel, the summary, and per-field errors to show in the modal."""
    try:
        channel = str(json.loads(view.get("private_metadata") or "{}").get("channel", ""))
    except (ValueError, TypeError, AttributeError):  # a client may send anything here
        channel = ""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    summary = clean(_string(_entry(values, SUMMARY_BLOCK), "value")).strip()
    if not summary:
        return channel, "", {SUMMARY_BLOCK: "Say in a few words how it was resolved."}
    if problem := over_limit(summary):
        return channel, "", {SUMMARY_BLOCK: problem}
    return channel, summary, {}
