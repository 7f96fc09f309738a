"""Presentation-attack detection: CM and replay scores in the score log; encrypted voice fingerprints.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("verifications", sa.Column("cm_score", sa.Float(), nullable=True))
    op.add_column("verifications", sa.Column("cm_version", sa.String(64), nullable=True))
    op.add_column("verifications", sa.Column("replay_score", sa.Float(), nullable=True))
    op.create_table(
        "voice_fingerprints",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("speaker_id", sa.String(32), sa.ForeignKey("speakers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("verification_id", sa.String(32), nullable=True),
        sa.Column("recipe", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_voice_fingerprints_speaker_id", "voice_fingerprints", ["speaker_id"])
    op.create_index("ix_voice_fingerprints_expires_at", "voice_fingerprints", ["expires_at"])


def downgrade() -> None:
    op.drop_table("voice_fingerprints")
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("replay_score")
        batch.drop_column("cm_version")
        batch.drop_column("cm_score")
