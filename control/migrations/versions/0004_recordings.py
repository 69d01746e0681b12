"""recordings, with at most one initiated or active per room

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RUNNING = sa.text("state IN ('initiated', 'active')")


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=24), nullable=False),
        sa.Column("language", sa.String(length=3), nullable=False),
        sa.Column("transcribe", sa.Boolean(), nullable=False),
        sa.Column("collect_metadata", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.String(length=1000), nullable=False),
        sa.Column("egress", sa.String(length=64), nullable=False),
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("file_content_type", sa.String(length=64), nullable=False),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("file_location", sa.String(length=1100), nullable=False),
        sa.Column("file_key", sa.String(length=1024), nullable=False),
        sa.Column("file_bucket", sa.String(length=63), nullable=False),
        sa.Column("transcription", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("egress_final", sa.Boolean(), nullable=False),
        sa.Column("stored_early", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("egress"),
    )
    op.create_index(
        "uq_recordings_room_running",
        "recordings",
        ["room_id"],
        unique=True,
        sqlite_where=_RUNNING,
        postgresql_where=_RUNNING,
    )
    op.create_index("ix_recordings_room_created", "recordings", ["room_id", "created_at"])
    op.create_index("ix_recordings_state", "recordings", ["state"])
    op.create_index("ix_recordings_created_at", "recordings", ["created_at"])
    op.create_index("ix_recordings_file_key", "recordings", ["file_key"])


def downgrade() -> None:
    op.drop_table("recordings")
