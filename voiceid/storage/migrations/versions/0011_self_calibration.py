"""Self-calibration snapshots: the population's own correction of the shipped calibration (issue 19).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "self_calibrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("cohort_snapshot_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_self_calibrations_model_version", "self_calibrations", ["model_version"])


def downgrade() -> None:
    op.drop_index("ix_self_calibrations_model_version", table_name="self_calibrations")
    op.drop_table("self_calibrations")
