"""Key lifecycle, consent ledger, voiceprint retention, audit trail (issue 10).

- api_keys: expiry, last use, revocation, and which row is the VOICEID_ADMIN_KEY bootstrap key;
- speakers.voiceprint_used_at: the last verification scored against the voiceprint (retention);
- consent_events: every grant and withdrawal, append-only; back-filled from the speakers' columns;
- audit_events / audit_head: the hash-chained log of administrative and analyst actions.
The per-speaker data keys are not here: they live in the separate key store (storage/keys.py).

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("bootstrap", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE api_keys SET bootstrap = true WHERE label = 'VOICEID_ADMIN_KEY'")
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("voiceprint_used_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE speakers SET voiceprint_used_at = updated_at WHERE voiceprint IS NOT NULL")

    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("speaker_ref", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("text_version", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_consent_events_speaker", "consent_events", ["speaker_ref", "id"])
    op.execute(
        "INSERT INTO consent_events (speaker_ref, action, text_version, channel, api_key_id, created_at) "
        "SELECT speaker_ref, 'GRANTED', consent_text_version, consent_channel, NULL, consent_at "
        "FROM speakers WHERE consent_at IS NOT NULL ORDER BY consent_at"
    )
    op.execute(
        "INSERT INTO consent_events (speaker_ref, action, text_version, channel, api_key_id, created_at) "
        "SELECT speaker_ref, 'WITHDRAWN', consent_text_version, NULL, NULL, consent_withdrawn_at "
        "FROM speakers WHERE consent_withdrawn_at IS NOT NULL ORDER BY consent_withdrawn_at"
    )

    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"name": "audit", "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_events")
    op.drop_index("ix_consent_events_speaker", table_name="consent_events")
    op.drop_table("consent_events")
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("voiceprint_used_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("bootstrap")
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
