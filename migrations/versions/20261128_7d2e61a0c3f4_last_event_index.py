"""last event index: a delegate's last event in a session, through a channel, from the index alone

Revision ID: 7d2e61a0c3f4
Revises: 14c7f8d2c08e
Create Date: 2026-11-28 14:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "7d2e61a0c3f4"
down_revision = "14c7f8d2c08e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.create_index(
            "ix_attendance_events_session_user_channel_at", ["session_id", "user_id", "channel", "at"], unique=False
        )
        batch_op.drop_index("ix_attendance_events_session_user")


def downgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.create_index("ix_attendance_events_session_user", ["session_id", "user_id"], unique=False)
        batch_op.drop_index("ix_attendance_events_session_user_channel_at")
