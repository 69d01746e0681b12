"""recording metadata agent: the AI service's agent that wrote down who spoke when, and the
file's time 0 to place its timeline

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.add_column(sa.Column("metadata_agent", sa.String(length=100), nullable=False, server_default=""))
        table.add_column(sa.Column("file_media_start", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.drop_column("file_media_start")
        table.drop_column("metadata_agent")
