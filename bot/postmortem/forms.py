"""The resolution-summary modal `/incident close` opens on an incident that is not
resolved, or is resolved without a summary."""

from __future__ import annotations

import json
from typing import Any

from bot.commands import clean
from bot.incidents.limits import TEXT_MAX, over_limit

RESOLUTION_CALLBACK = "postmortem_resolve_close"
SUMMARY_BLOCK = "summary"


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
    summary: Any = view
    for key in ("state", "values", SUMMARY_BLOCK, SUMMARY_BLOCK, "value"):
        summary = summary.get(key) if isinstance(summary, dict) else None
    summary = clean(summary).strip() if isinstance(summary, str) else ""
    if not summary:
        return channel, "", {SUMMARY_BLOCK: "Say in a few words how it was resolved."}
    if problem := over_limit(summary):
        return channel, "", {SUMMARY_BLOCK: problem}
    return channel, summary, {}
