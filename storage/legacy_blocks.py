"""Outbox rows in the format of the releases before migration 0011: Slack's blocks.

Until 0011 a row with buttons held the Block Kit JSON it would post (kind
`post_blocks`); now it holds the bot's card (kind `card`, `bot.messages.Card`). The
migration converts the queued rows, and during a rolling update an older replica may
still queue `post_blocks` rows after it ran, so the outbox converts those as it sends
them. Only the shapes those releases wrote are known here: sections, context
lines and buttons. Keep this module as long as migration 0011 exists.
"""

from __future__ import annotations

import json
from typing import Any


def card_from_blocks(text: str) -> str:
    """A `post_blocks` row's text as a `card` row's."""
    return json.dumps([_card_part(block) for block in json.loads(text)])


def blocks_from_card(text: str) -> str:
    """A `card` row's text as a `post_blocks` row's (the migration's downgrade)."""
    return json.dumps([_block(part) for part in json.loads(text)])


def _card_part(block: dict[str, Any]) -> dict[str, Any]:
    marker = block.get("block_id")
    if block.get("type") == "context":
        text = " ".join(e.get("text", "") for e in block.get("elements", []))
        return {"part": "note", "text": text, "marker": marker}
    if block.get("type") == "actions":
        buttons = [
            {
                "label": e["text"]["text"],
                "action": e["action_id"],
                "value": e.get("value", ""),
                "primary": e.get("style") == "primary",
            }
            for e in block.get("elements", [])
        ]
        return {"part": "buttons", "buttons": buttons, "marker": marker}
    return {"part": "section", "text": block["text"]["text"], "marker": marker}


def _block(part: dict[str, Any]) -> dict[str, Any]:
    if part["part"] == "note":
        block: dict[str, Any] = {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": part["text"]}],
        }
    elif part["part"] == "buttons":
        elements = []
        for b in part["buttons"]:
            element = {
                "type": "button",
                "action_id": b["action"],
                "text": {"type": "plain_text", "text": b["label"]},
                "value": b["value"],
            }
            if b["primary"]:
                element["style"] = "primary"
            elements.append(element)
        block = {"type": "actions", "elements": elements}
    else:
        block = {"type": "section", "text": {"type": "mrkdwn", "text": part["text"]}}
    if part.get("marker"):
        block["block_id"] = part["marker"]
    return block
