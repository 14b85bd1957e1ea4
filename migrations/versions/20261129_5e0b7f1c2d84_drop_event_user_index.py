"""drop the attendance log's index on user_id: no read uses it, and every check-in wrote to it

Revision ID: 5e0b7f1c2d84
Revises: a3f19c2e5b71
Create Date: 2026-11-29 00:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "5e0b7f1c2d84"
down_revision = "a3f19c2e5b71"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.drop_index("ix_attendance_events_user_id")


def downgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.create_index("ix_attendance_events_user_id", ["user_id"], unique=False)
