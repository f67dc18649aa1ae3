"""outbox: rows with buttons hold the bot's own card (kind `card`), not Slack's blocks
(kind `post_blocks`), since Block Kit is now rendered only when a message is sent.

Unsent rows written by the previous release are converted, so a status-page preview
or a triage digest queued across the deploy still goes out.

Revision ID: 0011_cards
Revises: 0010_room
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011_cards"
down_revision = "0010_room"
branch_labels = None
depends_on = None

_outbox = sa.table(
    "outbox",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("text", sa.Text),
    sa.column("delivered_at", sa.DateTime),
    sa.column("failed_at", sa.DateTime),
)


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


def _convert(old_kind: str, new_kind: str, convert: Any) -> None:
    """Only rows still to be sent: the outbox keeps every message ever sent, and
    rewriting those would hold up start-up (migrations run under a lock) for nothing."""
    bind = op.get_bind()
    unsent = sa.select(_outbox.c.id, _outbox.c.text).where(
        _outbox.c.kind == old_kind, _outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None)
    )
    rows = bind.execute(unsent).all()
    for row_id, text in rows:
        converted = json.dumps([convert(item) for item in json.loads(text)])
        bind.execute(
            _outbox.update().where(_outbox.c.id == row_id).values(kind=new_kind, text=converted)
        )


def upgrade() -> None:
    _convert("post_blocks", "card", _card_part)


def downgrade() -> None:
    _convert("card", "post_blocks", _block)
