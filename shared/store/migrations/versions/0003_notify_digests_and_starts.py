"""The digests a notifier formed and has not yet seen delivered (a notifier that dies while one is on its way
sends that same message again), and the notifiers' starts (a restarted lane's rate window counts one message
for each).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notify_digests",
        sa.Column("digest_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest_id"),
    )
    op.create_table(
        "notify_starts",
        sa.Column("start_id", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("start_id"),
    )
    with op.batch_alter_table("notify_starts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_starts_started_at"), ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notify_starts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_starts_started_at"))
    op.drop_table("notify_starts")
    op.drop_table("notify_digests")
