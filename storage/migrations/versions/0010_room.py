"""listeners: when Firebreak was receiving Slack's events (the post-mortem's gaps);
incidents.response_escalated_at (the response target enforced)

Revision ID: 0010_room
Revises: 0009_triage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0010_room"
down_revision = "0009_triage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listeners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("listeners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_listeners_owner"), ["owner"])
        batch_op.create_index(batch_op.f("ix_listeners_seen_at"), ["seen_at"])
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_escalated_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("response_escalated_at")
    op.drop_table("listeners")
