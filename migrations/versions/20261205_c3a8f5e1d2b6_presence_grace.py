"""presences say when the delegate's last page went; quorum records keep the Parties in a grace period

Revision ID: c3a8f5e1d2b6
Revises: 5e0b7f1c2d84
Create Date: 2026-12-05 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c3a8f5e1d2b6"
down_revision = "5e0b7f1c2d84"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("presences") as batch_op:
        batch_op.add_column(sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("quorum_snapshots") as batch_op:
        batch_op.add_column(sa.Column("grace_party_codes", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("quorum_snapshots") as batch_op:
        batch_op.drop_column("grace_party_codes")
    with op.batch_alter_table("presences") as batch_op:
        batch_op.drop_column("disconnected_at")
