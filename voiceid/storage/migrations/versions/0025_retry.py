"""The one voice retry of an INCONCLUSIVE verification (issue 19, item 4): the score log records which
verification a retry continued, at most one retry each (unique).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.add_column(sa.Column("retry_of", sa.String(32), nullable=True))
    op.create_index("ux_verifications_retry_of", "verifications", ["retry_of"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_verifications_retry_of", "verifications")
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("retry_of")
