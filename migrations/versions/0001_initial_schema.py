"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import guard.store

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
    )
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cycles_started_at"), ["started_at"], unique=False)

    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("warned_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deadline", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acted_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("slack_channel", sa.String(length=128), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.create_index("ix_episodes_open", ["arn", "rule_id", "ended_at"], unique=False)

    op.create_table(
        "resource_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("usd_per_hour", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_events")),
    )
    with op.batch_alter_table("resource_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_events_arn"), ["arn"], unique=False)
        batch_op.create_index(batch_op.f("ix_resource_events_at"), ["at"], unique=False)

    op.create_table(
        "resources",
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("usd_per_hour", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("price_source", sa.String(length=32), nullable=False),
        sa.Column("created_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("running_since", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_activity", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("activity_source", sa.String(length=32), nullable=False),
        sa.Column("evidence_error", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("first_seen", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("gone_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("arn", name=op.f("pk_resources")),
    )
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resources_kind"), ["kind"], unique=False)

    op.create_table(
        "scan_cursors",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("scanned_until", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "region", "source", name=op.f("pk_scan_cursors")),
    )
    op.create_table(
        "snoozes",
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("until", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("created_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("arn", name=op.f("pk_snoozes")),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=True),
        sa.Column("episode_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("finished_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episodes.id"], name=op.f("fk_actions_episode_id_episodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actions_arn"), ["arn"], unique=False)
        batch_op.create_index(batch_op.f("ix_actions_at"), ["at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=True),
        sa.Column("episode_id", sa.Integer(), nullable=True),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", guard.store.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", guard.store.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episodes.id"], name=op.f("fk_outbox_episode_id_episodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_arn"), ["arn"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_arn"))

    op.drop_table("outbox")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_at"))
        batch_op.drop_index(batch_op.f("ix_actions_arn"))

    op.drop_table("actions")
    op.drop_table("snoozes")
    op.drop_table("scan_cursors")
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resources_kind"))

    op.drop_table("resources")
    with op.batch_alter_table("resource_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_events_at"))
        batch_op.drop_index(batch_op.f("ix_resource_events_arn"))

    op.drop_table("resource_events")
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_index("ix_episodes_open")

    op.drop_table("episodes")
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cycles_started_at"))

    op.drop_table("cycles")
