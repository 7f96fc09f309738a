"""Initial schema: API keys, speakers with consent, encrypted enrolment embeddings, score log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "speakers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("speaker_ref", sa.String(128), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("consent_granted", sa.Boolean(), nullable=False),
        sa.Column("consent_text_version", sa.String(128), nullable=True),
        sa.Column("consent_channel", sa.String(32), nullable=True),
        sa.Column("consent_at", sa.DateTime(), nullable=True),
        sa.Column("consent_withdrawn_at", sa.DateTime(), nullable=True),
        sa.Column("voiceprint", sa.LargeBinary(), nullable=True),
        sa.Column("voiceprint_model_version", sa.String(128), nullable=True),
        sa.Column("consecutive_rejects", sa.Integer(), nullable=False),
        sa.Column("locked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "enrolment_embeddings",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("speaker_id", sa.String(32), sa.ForeignKey("speakers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("net_speech_s", sa.Float(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_enrolment_embeddings_speaker_id", "enrolment_embeddings", ["speaker_id"])
    op.create_table(
        "verifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("speaker_ref", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("raw_score", sa.Float(), nullable=True),
        sa.Column("llr", sa.Float(), nullable=True),
        sa.Column("norm", sa.String(16), nullable=True),
        sa.Column("calibration", sa.String(128), nullable=True),
        sa.Column("accept_threshold", sa.Float(), nullable=False),
        sa.Column("reject_threshold", sa.Float(), nullable=False),
        sa.Column("net_speech_s", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_verifications_created", "verifications", ["created_at", "id"])
    op.create_index("ix_verifications_speaker_created", "verifications", ["speaker_ref", "created_at"])


def downgrade() -> None:
    op.drop_table("verifications")
    op.drop_table("enrolment_embeddings")
    op.drop_table("speakers")
    op.drop_table("api_keys")
