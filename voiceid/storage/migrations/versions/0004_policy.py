"""Decision policy: weighted lockout, thresholds only where something was scored, cohort snapshots.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("lockout_weight", sa.Float(), nullable=False, server_default="0"))
    op.execute("UPDATE speakers SET lockout_weight = consecutive_rejects")
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("consecutive_rejects")
    with op.batch_alter_table("verifications") as batch:
        batch.alter_column("accept_threshold", existing_type=sa.Float(), nullable=True)
        batch.alter_column("reject_threshold", existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("threshold_scale", sa.String(8), nullable=True))
    op.create_table(
        "cohort_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cohort_snapshots_model_id", "cohort_snapshots", ["model_version", "id"])


def downgrade() -> None:
    op.drop_index("ix_cohort_snapshots_model_id", "cohort_snapshots")
    op.drop_table("cohort_snapshots")
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("threshold_scale")
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("consecutive_rejects", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_column("lockout_weight")
