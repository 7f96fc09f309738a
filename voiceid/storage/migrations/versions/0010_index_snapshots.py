"""Persisted ANN index snapshots (sealed chunks), written by the worker and loaded by replicas.

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "index_snapshots",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("vectors", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_index_snapshots_kind_state", "index_snapshots", ["kind", "model_version", "state"])
    op.create_table(
        "index_snapshot_chunks",
        sa.Column(
            "snapshot_id",
            sa.String(32),
            sa.ForeignKey("index_snapshots.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("index_snapshot_chunks")
    op.drop_index("ix_index_snapshots_kind_state", "index_snapshots")
    op.drop_table("index_snapshots")
