"""The schema as it stood before revisions (made then by ``SQLModel.metadata.create_all``). A database made
before revisions runs it too: what it has is kept, what it lacks (tables and indexes an older release did not
make) is made.

Revision ID: 0001
Revises:
Create Date: 2026-12-04 21:32:28.699424
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create_table(existing: set[str], name: str, *elements: Any) -> None:
    """A table, unless the database has it (one made before revisions by ``create_all``, which also made only the
    tables it lacked: a database last run by an older release may lack later ones)."""
    if name not in existing:
        op.create_table(name, *elements)


def _create_indexes(table: str, indexes: list[tuple[str, list[str]]]) -> None:
    """The table's indexes it lacks (``create_all`` never added an index to a table it had made)."""
    have = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}
    for name, columns in indexes:
        if name not in have:
            op.create_index(name, table, columns, unique=False)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    _create_table(
        existing,
        "action_link_uses",
        sa.Column("link_id", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("person", sa.String(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim", sa.String(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("link_id"),
    )
    _create_indexes("action_link_uses", [("ix_action_link_uses_ticket_id", ["ticket_id"])])

    _create_table(
        existing,
        "deliveries",
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    _create_indexes("deliveries", [("ix_deliveries_ticket_id", ["ticket_id"])])

    _create_table(
        existing,
        "notify_outbox",
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("source_topic", sa.String(), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    _create_indexes(
        "notify_outbox",
        [
            ("ix_notify_outbox_seq", ["seq"]),
            ("ix_notify_outbox_status", ["status"]),
            ("ix_notify_outbox_ticket_id", ["ticket_id"]),
        ],
    )

    _create_table(
        existing,
        "oncall_overrides",
        sa.Column("override_id", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("person", sa.String(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("override_id"),
    )
    _create_indexes(
        "oncall_overrides", [("ix_oncall_overrides_ends_at", ["ends_at"]), ("ix_oncall_overrides_team", ["team"])]
    )

    _create_table(
        existing,
        "silences",
        sa.Column("silence_id", sa.String(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("silence_id"),
    )
    _create_indexes("silences", [("ix_silences_ends_at", ["ends_at"])])

    _create_table(
        existing,
        "survey_answers",
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("rater", sa.String(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project", sa.String(), nullable=True),
        sa.Column("customer", sa.String(), nullable=True),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("phase", sa.String(), nullable=True),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    _create_indexes(
        "survey_answers",
        [
            ("ix_survey_answers_answered_at", ["answered_at"]),
            ("ix_survey_answers_customer", ["customer"]),
            ("ix_survey_answers_project", ["project"]),
            ("ix_survey_answers_team", ["team"]),
        ],
    )

    _create_table(
        existing,
        "ticket_timeline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("change_id"),
    )
    _create_indexes("ticket_timeline", [("ix_ticket_timeline_ticket_id", ["ticket_id"])])

    _create_table(
        existing,
        "tickets",
        sa.Column("ticket_id", sa.String(), nullable=False),
        sa.Column("dedup_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("person", sa.String(), nullable=True),
        sa.Column("project", sa.String(), nullable=True),
        sa.Column("customer", sa.String(), nullable=True),
        sa.Column("phase", sa.String(), nullable=True),
        sa.Column("next_level", sa.String(), nullable=True),
        sa.Column("known_issue", sa.String(), nullable=True),
        sa.Column("muted_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watchers", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("alerts_firing", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_on_customer", sa.Boolean(), nullable=False),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("stable_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notify_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_alerts", sa.Integer(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    _create_indexes(
        "tickets",
        [
            ("ix_tickets_customer", ["customer"]),
            ("ix_tickets_dedup_key", ["dedup_key"]),
            ("ix_tickets_opened_at", ["opened_at"]),
            ("ix_tickets_project", ["project"]),
            ("ix_tickets_state", ["state"]),
            ("ix_tickets_team", ["team"]),
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_team"))
        batch_op.drop_index(batch_op.f("ix_tickets_state"))
        batch_op.drop_index(batch_op.f("ix_tickets_project"))
        batch_op.drop_index(batch_op.f("ix_tickets_opened_at"))
        batch_op.drop_index(batch_op.f("ix_tickets_dedup_key"))
        batch_op.drop_index(batch_op.f("ix_tickets_customer"))

    op.drop_table("tickets")
    with op.batch_alter_table("ticket_timeline", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_timeline_ticket_id"))

    op.drop_table("ticket_timeline")
    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_answers_team"))
        batch_op.drop_index(batch_op.f("ix_survey_answers_project"))
        batch_op.drop_index(batch_op.f("ix_survey_answers_customer"))
        batch_op.drop_index(batch_op.f("ix_survey_answers_answered_at"))

    op.drop_table("survey_answers")
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_silences_ends_at"))

    op.drop_table("silences")
    with op.batch_alter_table("oncall_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oncall_overrides_team"))
        batch_op.drop_index(batch_op.f("ix_oncall_overrides_ends_at"))

    op.drop_table("oncall_overrides")
    with op.batch_alter_table("notify_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notify_outbox_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_notify_outbox_status"))
        batch_op.drop_index(batch_op.f("ix_notify_outbox_seq"))

    op.drop_table("notify_outbox")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_ticket_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("action_link_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_link_uses_ticket_id"))

    op.drop_table("action_link_uses")
