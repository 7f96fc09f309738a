"""Fraud workspace: attempt embeddings with retention, watchlist, review queue, watchlist hits in the log.

Chained after 0001 for now; a telephony migration (0002_calls) is being written in parallel and
the two are re-chained (0001 -> 0002 -> 0003) when the branches merge.

Revision ID: 0003
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_embeddings",
        sa.Column("verification_id", sa.String(32), primary_key=True),
        sa.Column("speaker_ref", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_attempt_embeddings_speaker_ref", "attempt_embeddings", ["speaker_ref"])
    op.create_index("ix_attempt_embeddings_expires_at", "attempt_embeddings", ["expires_at"])
    op.create_table(
        "watchlist_entries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("verification_id", sa.String(32), nullable=True),
        sa.Column("speaker_ref", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("speaker_ref", sa.String(128), nullable=False),
        sa.Column("matched_ref", sa.String(128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(32), nullable=True),
    )
    op.create_index("ix_review_items_status_created", "review_items", ["status", "created_at"])
    generations = op.create_table(
        "fraud_generations",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
    )
    op.bulk_insert(generations, [{"name": "watchlist", "generation": 0}])
    op.add_column("verifications", sa.Column("watchlist_hits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("watchlist_hits")
    op.drop_table("fraud_generations")
    op.drop_table("review_items")
    op.drop_table("watchlist_entries")
    op.drop_table("attempt_embeddings")
