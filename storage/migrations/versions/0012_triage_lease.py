"""triages.lease_*: the triage runs under a lease of its own, apart from the declare saga

Revision ID: 0012_triage_lease
Revises: 0011_cards
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0012_triage_lease"
down_revision = "0011_cards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("triages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("triages", schema=None) as batch_op:
        batch_op.drop_column("lease_token")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
