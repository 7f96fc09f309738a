"""Replicas: change feed (database revision of voiceprints and watchlist), webhook outbox, pinned
decision data.

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "change_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("pruned_below", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counters, [{"name": "biometrics", "revision": 0, "pruned_below": 0}])
    op.create_table(
        "change_feed",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_change_feed_revision", "change_feed", ["revision"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_webhook_outbox_call_id", "webhook_outbox", ["call_id"])
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "decision_data",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("decision_data")
    op.drop_index("ix_webhook_outbox_due", "webhook_outbox")
    op.drop_index("ix_webhook_outbox_call_id", "webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index("ix_change_feed_revision", "change_feed")
    op.drop_table("change_feed")
    op.drop_table("change_counters")
