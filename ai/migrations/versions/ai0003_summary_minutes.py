"""AI service: summaries keep their minutes as a structure

Revision ID: ai0003
Revises: ai0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ai0003"
down_revision = "ai0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ai_summaries") as table:
        table.add_column(sa.Column("minutes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ai_summaries") as table:
        table.drop_column("minutes")
