"""inbox of acked Slack requests; fencing tokens; the declarer's stored answer

Revision ID: 0007_inbox
Revises: 0006_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0007_inbox"
down_revision = "0006_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_claimed_until"), ["claimed_until"])
    with op.batch_alter_table("handled_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handled_requests_at"), ["at"])
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("nudge_claim_token", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("reply_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reply_until", UTCDateTime(), nullable=True))
        # Incidents declared before this migration were answered the old way.
        batch_op.add_column(
            sa.Column("declarer_answered", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        for column in (
            "declarer_answered",
            "reply_until",
            "reply_url",
            "nudge_claim_token",
            "lease_token",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("handled_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handled_requests_at"))
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_claimed_until"))
    op.drop_table("inbox")
