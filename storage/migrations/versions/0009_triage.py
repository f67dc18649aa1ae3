"""triage at declare: the scenario guessed and how far its diagnostics got

Revision ID: 0009_triage
Revises: 0008_private
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_triage"
down_revision = "0008_private"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triages",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(length=64), nullable=True),
        sa.Column("service", sa.String(length=128), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("switched_by", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("digest_outbox_id", sa.Integer(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    with op.batch_alter_table("triages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_triages_state"), ["state"])


def downgrade() -> None:
    with op.batch_alter_table("triages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_triages_state"))
    op.drop_table("triages")
