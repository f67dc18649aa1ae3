"""private (security) incidents

Revision ID: 0008_private
Revises: 0007_inbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_private"
down_revision = "0007_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("private")
