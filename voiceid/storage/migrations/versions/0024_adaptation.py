"""Voiceprints adapted with high-confidence accepted calls (issue 19, item 3): the kept calls (sealed
embeddings under the speaker's key), the adapted voiceprint of each channel, and the score log's mark of
a call that adapted (or no longer adapts) its speaker's voiceprint.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adaptation_calls",
        sa.Column("verification_id", sa.String(32), primary_key=True),
        sa.Column("speaker_id", sa.String(32), sa.ForeignKey("speakers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_adaptation_calls_speaker_id", "adaptation_calls", ["speaker_id"])
    op.create_index("ix_adaptation_calls_expires_at", "adaptation_calls", ["expires_at"])
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("adapted_voiceprint", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("adapted_phone_voiceprint", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("verifications") as batch:
        batch.add_column(sa.Column("adaptation", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verifications") as batch:
        batch.drop_column("adaptation")
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("adapted_phone_voiceprint")
        batch.drop_column("adapted_voiceprint")
    op.drop_index("ix_adaptation_calls_expires_at", "adaptation_calls")
    op.drop_index("ix_adaptation_calls_speaker_id", "adaptation_calls")
    op.drop_table("adaptation_calls")
