"""Voice fingerprints (replay detection): encrypted at rest, erased with the speaker, purged with attempts.

All encryption of fingerprints goes through `_seal` / `_open`, one place, so a change of key scheme
(per-speaker data keys) touches two functions. The associated data binds each blob to its row and
fingerprint recipe, like the embeddings.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from voiceid.antispoof.fingerprint import Fingerprint
from voiceid.storage.crypto import associated_data
from voiceid.storage.keys import Vault, speaker_owner
from voiceid.storage.models import Speaker, VoiceFingerprint
from voiceid.storage.repositories import new_id

KIND = "voice_fingerprint"
ENROLMENT = "enrolment"
ATTEMPT = "attempt"


def _seal(cipher: Vault, speaker_id: str, row_id: str, recipe: str, fp: Fingerprint) -> bytes:
    """Sealed under the speaker's data key: erasing the speaker shreds every copy of it."""
    return cipher.seal(speaker_owner(speaker_id), fp.to_bytes(), associated_data(KIND, row_id, recipe))


def _open(cipher: Vault, row: VoiceFingerprint) -> Fingerprint:
    return Fingerprint.from_bytes(cipher.open(row.ciphertext, associated_data(KIND, row.id, row.recipe)))


def add_fingerprint(
    session: Session,
    cipher: Vault,
    speaker: Speaker,
    fp: Fingerprint,
    recipe: str,
    kind: str,
    created_at: datetime,
    expires_at: datetime | None = None,
    verification_id: str | None = None,
) -> VoiceFingerprint:
    row_id = new_id()
    row = VoiceFingerprint(
        id=row_id,
        speaker_id=speaker.id,
        kind=kind,
        verification_id=verification_id,
        recipe=recipe,
        ciphertext=_seal(cipher, speaker.id, row_id, recipe, fp),
        created_at=created_at,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def speaker_fingerprints(
    session: Session, cipher: Vault, speaker: Speaker, recipe: str, now: datetime, limit: int
) -> list[tuple[VoiceFingerprint, Fingerprint]]:
    """The speaker's live fingerprints of this recipe, newest first, at most `limit`."""
    rows = session.scalars(
        select(VoiceFingerprint)
        .where(VoiceFingerprint.speaker_id == speaker.id, VoiceFingerprint.recipe == recipe)
        .order_by(VoiceFingerprint.created_at.desc(), VoiceFingerprint.id.desc())
    ).all()
    live = [r for r in rows if r.expires_at is None or r.expires_at > now][:limit]
    return [(r, _open(cipher, r)) for r in live]


def count_fingerprints(session: Session, speaker_id: str) -> int:
    return len(session.scalars(select(VoiceFingerprint.id).where(VoiceFingerprint.speaker_id == speaker_id)).all())


def purge_expired_fingerprints(session: Session, now: datetime) -> int:
    result = session.execute(
        delete(VoiceFingerprint).where(VoiceFingerprint.expires_at.is_not(None), VoiceFingerprint.expires_at <= now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
