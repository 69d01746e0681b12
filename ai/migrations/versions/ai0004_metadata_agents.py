"""AI service: metadata agents, the hidden participants that write down who spoke when

Revision ID: ai0004
Revises: ai0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ai0004"
down_revision = "ai0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_metadata_agents",
        sa.Column("id", sa.String(length=63), primary_key=True),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("room", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=False, server_default=""),
        sa.Column("error_reason", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("error_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("timeline_key", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_ai_metadata_agents_state", "ai_metadata_agents", ["state"])


def downgrade() -> None:
    op.drop_index("ix_ai_metadata_agents_state", table_name="ai_metadata_agents")
    op.drop_table("ai_metadata_agents")
