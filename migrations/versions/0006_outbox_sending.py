"""outbox sending

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

When a Slack send began (`outbox.sending_at`), committed before the call: a row found with it
set and no `sent_at` (a crash between Slack accepting the post and the outbox storing it) is
looked up in the channel's history before it is posted again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import guard.tables

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sending_at", guard.tables.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("sending_at")
