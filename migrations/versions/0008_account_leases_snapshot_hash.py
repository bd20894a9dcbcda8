"""account leases for sharding; snapshot hash of resources

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

`account_leases`: which replica scans each account until when, and the scan interval (slot)
it was last scanned in. `shard_replicas`: when each replica last ran a cycle, to share the
accounts between the live ones. `resources.snapshot_hash`: a hash of a resource's snapshot
values, so an unchanged resource is recognised without loading its JSON columns; NULL on the
rows from before (they are compared once by their values, then hashed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import guard.tables

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_leases",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("expires_at", guard.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scanned_slot", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_account_leases")),
    )
    op.create_table(
        "shard_replicas",
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("seen_at", guard.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_shard_replicas")),
    )
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("snapshot_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("snapshot_hash")
    op.drop_table("shard_replicas")
    op.drop_table("account_leases")
