"""Fraud desk: pooled watchlist voices (samples per entry, channel per entry).

A watchlist entry is one fraud voice on one channel; every flagged call of it is a sample, and the
entry's vector is the pool of its samples. A verification can be a sample of at most one entry, which
makes flagging the same attempt twice a no-op.

Revision ID: 0008
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watchlist_entries") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=True))
        batch.add_column(sa.Column("samples", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "watchlist_samples",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("entry_id", sa.String(32), sa.ForeignKey("watchlist_entries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("verification_id", sa.String(32), nullable=True, unique=True),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_watchlist_samples_entry_id", "watchlist_samples", ["entry_id"])
    op.create_index("ix_review_items_cause", "review_items", ["kind", "speaker_ref", "matched_ref", "status"])


def downgrade() -> None:
    op.drop_index("ix_review_items_cause", "review_items")
    op.drop_table("watchlist_samples")
    with op.batch_alter_table("watchlist_entries") as batch:
        batch.drop_column("samples")
        batch.drop_column("channel")
