"""Retention of voiceprints: one unused for `voiceprint_retention_days` is erased automatically.

"Unused" means no verification was scored against it: `speakers.voiceprint_used_at` is set when
the voiceprint is built and at every scored verification. HMRC keeps Voice ID data for six years
from its last use; Amazon Connect Voice ID expired speakers not accessed for three years; the
default here is three years (docs/security.md). An expired speaker keeps their row and consent
but loses every biometric row and their data key (crypto-shredded, as for any erasure), answers
status EXPIRED, and verifications of them are NOT_ENROLLED until they enrol again.

The job runs beside the attempt-embedding purge (the server's periodic purge and `voiceid purge`),
in batches of bounded size so one run never holds a long transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from voiceid.services import audit
from voiceid.services.adaptation import Adaptation
from voiceid.services.audit import AuditAction
from voiceid.services.context import AppContext
from voiceid.statuses import SpeakerStatus
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database
from voiceid.storage.models import Speaker


def expire_unused_voiceprints(db: Database, now: datetime, retention_days: float, batch: int = 500) -> int:
    """Erase every voiceprint unused since `now - retention_days`; the number of speakers expired."""
    cutoff = now - timedelta(days=retention_days)
    last_use = func.coalesce(Speaker.voiceprint_used_at, Speaker.updated_at)
    expired = 0
    with audit.acting_as("retention"):
        while True:
            with db.transaction() as session:
                speakers = session.scalars(
                    select(Speaker)
                    .where(Speaker.voiceprint.is_not(None), last_use < cutoff)
                    .order_by(Speaker.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                ).all()
                for speaker in speakers:
                    used = speaker.voiceprint_used_at or speaker.updated_at
                    repo.erase_biometrics(session, speaker)
                    fraud_repo.erase_attempts(session, speaker.speaker_ref)
                    speaker.status = SpeakerStatus.EXPIRED
                    speaker.updated_at = now
                    audit.append(
                        session,
                        AuditAction.SPEAKER_EXPIRED,
                        speaker.speaker_ref,
                        {"last_used_at": used.isoformat(), "retention_days": retention_days},
                        now,
                    )
            expired += len(speakers)
            if len(speakers) < batch:
                break
    if expired:
        db.flush_erased()
    return expired


def purge_attempts(ctx: AppContext) -> int:
    """Delete attempt embeddings (and calls kept to adapt voiceprints) past their retention: the worker's
    `retention-purge` job, `voiceid purge` and the fraud desk's purge all run this one."""
    with ctx.db.transaction() as session:
        removed = fraud_repo.purge_expired_attempts(session, ctx.clock())
    # The calls kept to adapt voiceprints expire alike; each voiceprint is rebuilt without them.
    removed += Adaptation(ctx).purge_expired()
    if removed:
        ctx.db.flush_erased()
    return removed
