"""reminders, postmortems, pending actions

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("dry_run", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pending_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_actions_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "postmortems",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("written_path", sa.String(length=512), nullable=True),
        sa.Column("file_id", sa.String(length=32), nullable=True),
        sa.Column("announced_ts", sa.String(length=32), nullable=True),
        sa.Column("exported_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id"),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_update_due_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_update_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_update_text", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("nudges_missed", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("nudge_claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("nudge_claimed_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_incidents_next_update_due_at"), ["next_update_due_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_next_update_due_at"))
        batch_op.drop_column("closed_at")
        batch_op.drop_column("nudge_claimed_until")
        batch_op.drop_column("nudge_claimed_by")
        batch_op.drop_column("nudges_missed")
        batch_op.drop_column("last_update_text")
        batch_op.drop_column("last_update_at")
        batch_op.drop_column("next_update_due_at")

    op.drop_table("postmortems")
    with op.batch_alter_table("pending_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_actions_incident_id"))

    op.drop_table("pending_actions")
