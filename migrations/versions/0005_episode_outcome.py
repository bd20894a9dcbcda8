"""episode outcome and attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

How an episode's last action went, and its failed attempts: a dry-run "would stop" is re-armed
when the guard starts enforcing, a failed action is retried at the episode's deadline. Existing
acted episodes take the outcome of their last action; failed ones become due for a retry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acted_outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        """
        UPDATE episodes SET acted_outcome = (
            SELECT a.outcome FROM actions a
            WHERE a.episode_id = episodes.id AND a.action <> 'warn'
            ORDER BY a.id DESC LIMIT 1
        )
        WHERE acted_at IS NOT NULL AND ended_at IS NULL
        """
    )
    op.execute(
        "UPDATE episodes SET acted_at = NULL, attempts = 1 "
        "WHERE acted_outcome = 'failed' AND ended_at IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("acted_outcome")
