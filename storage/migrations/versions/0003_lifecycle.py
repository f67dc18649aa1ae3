"""lifecycle: reminder schedule version, snooze end, follow-up link

Revision ID: 0003_lifecycle
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0003_lifecycle"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reminder_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("snoozed_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("follow_up_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_incidents_follow_up_of", "incidents", ["follow_up_of"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_constraint("fk_incidents_follow_up_of", type_="foreignkey")
        batch_op.drop_column("follow_up_of")
        batch_op.drop_column("snoozed_until")
        batch_op.drop_column("reminder_version")
