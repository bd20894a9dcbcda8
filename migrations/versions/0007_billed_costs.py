"""billed costs; acted episodes end at their action

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`billed_costs`: per resource and UTC day, what the AWS Data Exports (CUR 2.0 or FOCUS) bill
says, to set against the guard's own estimate (`accruals`). Episodes whose action was done or
skipped end at that action now (nothing more is said about them); open ones from before are
ended here, so the first cycle after the upgrade does not "resolve" them in Slack.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import guard.tables

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billed_costs",
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("fetched_at", guard.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("arn", "day", name=op.f("pk_billed_costs")),
    )
    op.execute(
        "UPDATE episodes SET ended_at = acted_at, end_reason = 'ended at its action' "
        "WHERE ended_at IS NULL AND acted_at IS NOT NULL "
        "AND acted_outcome IN ('done', 'skipped')"
    )


def downgrade() -> None:
    op.drop_table("billed_costs")
