"""outbox: order per destination, permanent failures, collapsible rows

Revision ID: 0006_outbox
Revises: 0005_mitigations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = "0006_outbox"
down_revision = "0005_mitigations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("destination", sa.String(length=120), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("failed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("collapse_key", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_destination"), ["destination"], unique=False)
    # Rows queued before: a post names its channel; a refresh goes to the incident's channel.
    op.execute(
        "UPDATE outbox SET destination = 'slack:' || COALESCE(NULLIF(channel, ''), "
        "(SELECT incidents.channel_id FROM incidents WHERE incidents.id = outbox.incident_id), '')"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_destination"))
        batch_op.drop_column("collapse_key")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("destination")
