"""AI service: transcriptions of one file per speaker, and a vocabulary to prime them with

Revision ID: ai0002
Revises: ai0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ai0002"
down_revision = "ai0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ai_transcriptions") as table:
        table.add_column(sa.Column("speaker_tracks", sa.JSON(), nullable=False, server_default="[]"))
        table.add_column(sa.Column("vocabulary", sa.String(length=500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("ai_transcriptions") as table:
        table.drop_column("vocabulary")
        table.drop_column("speaker_tracks")
