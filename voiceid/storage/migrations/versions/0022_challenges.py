"""Spoken challenges (issue 22): issued prompts, and the challenge of each verification in the score log.

Revision ID: 0022
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "challenges",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("speaker_ref", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("prompt", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("verification_id", sa.String(32), nullable=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_challenges_speaker_expires", "challenges", ["speaker_ref", "expires_at"])
    op.add_column("verifications", sa.Column("challenge_id", sa.String(32), nullable=True))
    op.add_column("verifications", sa.Column("challenge_status", sa.String(16), nullable=True))
    op.add_column("verifications", sa.Column("challenge_prompt", sa.String(16), nullable=True))
    op.add_column("verifications", sa.Column("challenge_heard", sa.String(64), nullable=True))
    op.add_column("verifications", sa.Column("challenge_score", sa.Float(), nullable=True))
    op.add_column("calls", sa.Column("challenge_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("challenge_id")
    with op.batch_alter_table("verifications") as batch:
        for column in ("challenge_score", "challenge_heard", "challenge_prompt", "challenge_status", "challenge_id"):
            batch.drop_column(column)
    op.drop_table("challenges")
