"""One-time conversion of biometric blobs written before envelope encryption.

Before migration 0005 every blob was encrypted directly under the master key. At start-up each
such blob (recognised by the missing envelope marker) is decrypted under the master key with its
old associated data and sealed again under its owner's data key, in one transaction per table.
Blobs already in envelope form are not touched, so the conversion is idempotent and cheap once
done. A blob that does not decrypt under the master key is left as it is and reported: it was
never readable, and deleting evidence silently is worse than logging it.
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, LargeBinary, func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from voiceid.storage.crypto import Cipher, DecryptionError, associated_data
from voiceid.storage.db import Database
from voiceid.storage.keys import MAGIC, Vault, speaker_owner, watchlist_owner
from voiceid.storage.models import AttemptEmbedding, EnrolmentEmbedding, Speaker, WatchlistEntry

log = logging.getLogger(__name__)


def _legacy(blob: bytes | None) -> bool:
    return blob is not None and not blob.startswith(MAGIC)


def _unmarked(column: InstrumentedAttribute[bytes] | InstrumentedAttribute[bytes | None]) -> ColumnElement[bool]:
    """Rows whose blob lacks the envelope marker, found by the database (substr works on SQLite
    blobs and PostgreSQL bytea alike) so a converted table costs one index-free scan, not a load."""
    return func.substr(column, 1, len(MAGIC)) != literal(MAGIC, LargeBinary)


def _reseal(vault: Vault, legacy: Cipher, owner: str, blob: bytes, aad: bytes) -> bytes | None:
    try:
        plaintext = legacy.decrypt(blob, aad)
    except DecryptionError:
        log.error("a legacy biometric blob does not decrypt under the master key; left untouched (%s)", owner)
        return None
    return vault.seal(owner, plaintext, aad)


def _upgrade(session: Session, vault: Vault, legacy: Cipher) -> int:
    count = 0
    for emb in session.scalars(select(EnrolmentEmbedding).where(_unmarked(EnrolmentEmbedding.ciphertext))):
        if _legacy(emb.ciphertext):
            aad = associated_data("enrolment_embedding", emb.id, emb.model_version)
            new = _reseal(vault, legacy, speaker_owner(emb.speaker_id), emb.ciphertext, aad)
            if new is not None:
                emb.ciphertext, count = new, count + 1
    for speaker in session.scalars(select(Speaker).where(_unmarked(Speaker.voiceprint))):
        if _legacy(speaker.voiceprint) and speaker.voiceprint is not None and speaker.voiceprint_model_version:
            aad = associated_data("voiceprint", speaker.id, speaker.voiceprint_model_version)
            new = _reseal(vault, legacy, speaker_owner(speaker.id), speaker.voiceprint, aad)
            if new is not None:
                speaker.voiceprint, count = new, count + 1
    for attempt in session.scalars(select(AttemptEmbedding).where(_unmarked(AttemptEmbedding.ciphertext))):
        if _legacy(attempt.ciphertext):
            speaker_id = session.scalar(select(Speaker.id).where(Speaker.speaker_ref == attempt.speaker_ref))
            if speaker_id is None:  # no owner to key it to; it expires with its retention period
                log.error("legacy attempt embedding %s has no speaker; left as it is", attempt.verification_id)
                continue
            aad = associated_data("attempt_embedding", attempt.verification_id, attempt.model_version)
            new = _reseal(vault, legacy, speaker_owner(speaker_id), attempt.ciphertext, aad)
            if new is not None:
                attempt.ciphertext, count = new, count + 1
    for entry in session.scalars(select(WatchlistEntry).where(_unmarked(WatchlistEntry.ciphertext))):
        if _legacy(entry.ciphertext):
            aad = associated_data("watchlist_entry", entry.id, entry.model_version)
            new = _reseal(vault, legacy, watchlist_owner(entry.id), entry.ciphertext, aad)
            if new is not None:
                entry.ciphertext, count = new, count + 1
    session.flush()
    return count


def upgrade_legacy_blobs(db: Database, vault: Vault) -> int:
    """Convert every pre-envelope blob; the number converted. Safe to run at every start-up."""
    legacy = Cipher(vault.masters.current.key)
    with db.transaction() as session:
        count = _upgrade(session, vault, legacy)
    if count:
        log.info("re-encrypted %d biometric blobs under per-owner data keys", count)
        db.flush_erased()
    return count
