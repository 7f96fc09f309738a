"""Score log: the countermeasure threshold each call was judged by, and whether the CM flagged it,
passed it or was skipped (issue 18).

Revision ID: 0018
Revises: 0019b
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0019b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("verifications", sa.Column("cm_threshold", sa.Float(), nullable=True))
    op.add_column("verifications", sa.Column("cm_check", sa.String(8), nullable=True))
    op.create_index("ix_verifications_cm_check_created", "verifications", ["cm_check", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_verifications_cm_check_created", table_name="verifications")
    op.drop_column("verifications", "cm_check")
    op.drop_column("verifications", "cm_threshold")
