"""Alembic's environment: run with the connection shared/store/schema.py hands over, against the models' metadata."""

from alembic import context
from sqlmodel import SQLModel

import shared.store.db
import shared.store.outbox  # noqa: F401 - their tables are the metadata's

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite alters a table by copying it; alembic's batch mode does that
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
