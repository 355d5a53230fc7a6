"""The API client a person acted through, on the timeline; the chat messages a Slack bot may redraw.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_timeline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("via", sa.String(), nullable=True))
    op.create_table(
        "chat_messages",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("ref", sa.String(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "ticket_id"),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_messages_posted_at"), ["posted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_messages_posted_at"))
    op.drop_table("chat_messages")
    with op.batch_alter_table("ticket_timeline", schema=None) as batch_op:
        batch_op.drop_column("via")
