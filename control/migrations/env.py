"""Alembic environment: migrations run on a connection handed over by ``parley.server.db``;
control's revisions are recorded in Alembic's default ``alembic_version`` table."""

from __future__ import annotations

from alembic import context

from control._models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
