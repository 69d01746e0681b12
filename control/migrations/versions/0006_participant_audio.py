"""participant audio: each participant's own audio file beside a TRANSCRIPT recording

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.add_column(sa.Column("participant_audio", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.drop_column("participant_audio")
