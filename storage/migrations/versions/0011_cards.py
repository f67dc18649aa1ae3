"""outbox: rows with buttons hold the bot's own card (kind `card`), not Slack's blocks
(kind `post_blocks`), since Block Kit is now rendered only when a message is sent.

Unsent rows written by the previous release are converted, so a status-page preview
or a triage digest queued across the deploy still goes out; rows an older replica
queues or drops during a rolling update are handled by the outbox itself
(`storage.legacy_blocks`, `storage.outbox.resend_dropped_cards`).

Revision ID: 0011_cards
Revises: 0010_room
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from storage import legacy_blocks

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


def _convert(old_kind: str, new_kind: str, convert: Callable[[str], str]) -> None:
    """Only rows still to be sent: the outbox keeps every message ever sent, and
    rewriting those would hold up start-up (migrations run under a lock) for nothing."""
    bind = op.get_bind()
    unsent = sa.select(_outbox.c.id, _outbox.c.text).where(
        _outbox.c.kind == old_kind, _outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None)
    )
    rows = bind.execute(unsent).all()
    for row_id, text in rows:
        converted = convert(text)
        bind.execute(
            _outbox.update().where(_outbox.c.id == row_id).values(kind=new_kind, text=converted)
        )


def upgrade() -> None:
    _convert("post_blocks", "card", legacy_blocks.card_from_blocks)


def downgrade() -> None:
    _convert("card", "post_blocks", legacy_blocks.blocks_from_card)
