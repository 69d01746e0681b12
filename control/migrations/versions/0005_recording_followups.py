"""recording follow-ups: which control replica transcribes a saved recording, and until when

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.add_column(sa.Column("followup_owner", sa.String(length=32), nullable=False, server_default=""))
        table.add_column(sa.Column("followup_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as table:
        table.drop_column("followup_until")
        table.drop_column("followup_owner")
