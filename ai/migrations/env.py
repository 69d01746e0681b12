"""Alembic environment: migrations run on a connection handed over by ``parley.server.db``,
recording their version in ``ai_alembic_version`` so the tables may share control's database."""

from __future__ import annotations

from alembic import context

from ai._models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
