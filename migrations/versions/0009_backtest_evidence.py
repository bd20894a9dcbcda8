"""backtest history: per-snapshot evidence

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

`evidence`: one row per resource each time a snapshot saw its evidence change (status, price,
running since, last activity and its source, tags, utilization, stored snooze), so that
`cost-guard backtest` can rebuild what every cycle saw and replay it through the rules.
`evidence_snapshots`: when each snapshot was taken and which known resources it did not
list. `resources.evidence_key`: the fingerprint of a resource's latest `evidence` row (a
change is detected without reading the history). History from before this migration has no
such rows: a backtest cannot replay it, and says so.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import guard.tables

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("at", guard.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("usd_per_hour", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("running_since", guard.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_activity", guard.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("activity_source", sa.String(length=32), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("utilization", sa.JSON(), nullable=False),
        sa.Column("snoozed_until", guard.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
    )
    op.create_index("ix_evidence_arn_at", "evidence", ["arn", "at"], unique=False)
    op.create_index(op.f("ix_evidence_at"), "evidence", ["at"], unique=False)
    op.create_table(
        "evidence_snapshots",
        sa.Column("at", guard.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("missed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("at", name=op.f("pk_evidence_snapshots")),
    )
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("evidence_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("evidence_key")
    op.drop_table("evidence_snapshots")
    op.drop_index(op.f("ix_evidence_at"), table_name="evidence")
    op.drop_index("ix_evidence_arn_at", table_name="evidence")
    op.drop_table("evidence")
