"""Phone views of wideband enrolment audio (issue 19, cross-channel): per enrolment utterance the
sealed embedding of its G.711 view, and per speaker the phone voiceprint built from them.

Revision ID: 0019b
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019b"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrolment_embeddings") as batch:
        batch.add_column(sa.Column("phone_view", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("speakers") as batch:
        batch.add_column(sa.Column("phone_voiceprint", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("speakers") as batch:
        batch.drop_column("phone_voiceprint")
    with op.batch_alter_table("enrolment_embeddings") as batch:
        batch.drop_column("phone_view")
