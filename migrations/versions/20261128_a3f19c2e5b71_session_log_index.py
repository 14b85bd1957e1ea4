"""session log index: a session's events in id order, from an id on (the dashboards' timeline reads them by chunks)

Revision ID: a3f19c2e5b71
Revises: 7d2e61a0c3f4
Create Date: 2026-11-28 17:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "a3f19c2e5b71"
down_revision = "7d2e61a0c3f4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.create_index("ix_attendance_events_session_id", ["session_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attendance_events") as batch_op:
        batch_op.drop_index("ix_attendance_events_session_id")
