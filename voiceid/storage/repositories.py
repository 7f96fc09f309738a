"""Queries and writes, one function per intent. Callers own the transaction (a `Session`)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Select, String, and_, case, cast, delete, func, inspect, or_, select
from sqlalchemy.orm import Session

from voiceid.enrolment.session import EnrolmentSample
from voiceid.enrolment.views import ChannelSample
from voiceid.statuses import AdaptationState, CmCheck, SpeakerStatus
from voiceid.storage import adaptation_repo
from voiceid.storage.crypto import associated_data
from voiceid.storage.keys import KeyShreddedError, Vault, mark_for_shredding, speaker_owner
from voiceid.storage.models import ApiKey, EnrolmentEmbedding, Speaker, Verification, VoiceFingerprint
from voiceid.verify.cohort import PHONE
from voiceid.verify.policy import Scale

KEY_PREFIX = "vid_"


def new_id() -> str:
    return uuid.uuid4().hex


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is not brute-forceable; a slow KDF would
    # only add latency to every IVR request.
    return hashlib.sha256(key.encode()).hexdigest()


# --- API keys ------------------------------------------------------------------------------


def create_api_key(session: Session, role: str, label: str | None = None) -> tuple[ApiKey, str]:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=new_id(), key_hash=hash_key(secret), role=role, label=label)
    session.add(row)
    session.flush()
    return row, secret


def ensure_api_key(session: Session, secret: str, role: str, label: str) -> ApiKey:
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one_or_none()
    if row is None:
        row = ApiKey(id=new_id(), key_hash=hash_key(secret), role=role, label=label)
        session.add(row)
    else:
        row.role = role
    session.flush()
    return row


def find_api_key(session: Session, secret: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one_or_none()


# --- idempotent creates (replicas) --------------------------------------------------------


def insert_if_absent(session: Session, model: type[Any], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call created the row. Under concurrency
    the loser waits for the winner's commit and inserts nothing, instead of an IntegrityError."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(model).values(**values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(model).values(**values).on_conflict_do_nothing()
    # RETURNING, not rowcount: an ORM-enabled INSERT does not report a reliable rowcount everywhere.
    key = inspect(model).primary_key[0]
    return session.execute(statement.returning(key)).first() is not None


def insert_speaker_if_absent(session: Session, ref: str, status: SpeakerStatus, now: datetime) -> bool:
    values = {
        "id": new_id(),
        "speaker_ref": ref,
        "status": status,
        "consent_granted": True,
        "lockout_weight": 0.0,
        "created_at": now,
        "updated_at": now,
    }
    return insert_if_absent(session, Speaker, values)


# --- speakers and their biometric data ----------------------------------------------------


def get_speaker(session: Session, ref: str, for_update: bool = False) -> Speaker | None:
    query = select(Speaker).where(Speaker.speaker_ref == ref)
    if for_update:
        # PostgreSQL: serialises concurrent enrolments/verifications of one speaker (lockout
        # counter, voiceprint). SQLite ignores it; its BEGIN IMMEDIATE already serialises writers.
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def enrolment_speech_s(session: Session, speaker: Speaker, model_version: str) -> float:
    total = session.scalar(
        select(func.coalesce(func.sum(EnrolmentEmbedding.net_speech_s), 0.0)).where(
            EnrolmentEmbedding.speaker_id == speaker.id, EnrolmentEmbedding.model_version == model_version
        )
    )
    return float(total or 0.0)


def add_enrolment_embedding(
    session: Session,
    vault: Vault,
    speaker: Speaker,
    vector: npt.NDArray[np.float32],
    model_version: str,
    net_speech_s: float,
    quality: dict[str, Any],
    phone_view: npt.NDArray[np.float32] | None = None,
) -> EnrolmentEmbedding:
    row_id = new_id()
    blob = vault.seal_vector(
        speaker_owner(speaker.id), vector, associated_data("enrolment_embedding", row_id, model_version)
    )
    view = (
        None
        if phone_view is None
        else vault.seal_vector(
            speaker_owner(speaker.id), phone_view, associated_data("enrolment_phone_view", row_id, model_version)
        )
    )
    row = EnrolmentEmbedding(
        id=row_id,
        speaker_id=speaker.id,
        model_version=model_version,
        ciphertext=blob,
        net_speech_s=net_speech_s,
        quality=quality,
        phone_view=view,
    )
    session.add(row)
    session.flush()
    return row


def enrolment_qualities(session: Session, speaker: Speaker, model_version: str) -> list[dict[str, Any]]:
    """The quality record of each enrolment file (it holds the file's countermeasure result)."""
    return list(
        session.scalars(
            select(EnrolmentEmbedding.quality).where(
                EnrolmentEmbedding.speaker_id == speaker.id, EnrolmentEmbedding.model_version == model_version
            )
        ).all()
    )


def enrolment_samples(
    session: Session, vault: Vault, speaker: Speaker, model_version: str, exclude_cm_flagged: bool = False
) -> list[EnrolmentSample]:
    """The enrolment embeddings; `exclude_cm_flagged` leaves out files the countermeasure flagged
    (kept out of the voiceprint while the enrolment as a whole is in doubt, services/pad_checks.py)."""
    rows = session.scalars(
        select(EnrolmentEmbedding)
        .where(EnrolmentEmbedding.speaker_id == speaker.id, EnrolmentEmbedding.model_version == model_version)
        .order_by(EnrolmentEmbedding.created_at, EnrolmentEmbedding.id)
    ).all()
    samples = []
    for row in rows:
        if exclude_cm_flagged and (row.quality or {}).get("cm_flagged"):
            continue
        try:
            vector = vault.open_vector(
                row.ciphertext, associated_data("enrolment_embedding", row.id, row.model_version)
            )
        except KeyShreddedError:
            continue  # left by an erasure whose commit failed after its key was destroyed: erased
        samples.append(EnrolmentSample(vector, row.net_speech_s))
    return samples


def enrolment_channel_samples(
    session: Session, vault: Vault, speaker: Speaker, model_version: str
) -> list[ChannelSample]:
    """Each enrolment utterance's embedding with the channel it arrived on and its phone view."""
    rows = session.scalars(
        select(EnrolmentEmbedding)
        .where(EnrolmentEmbedding.speaker_id == speaker.id, EnrolmentEmbedding.model_version == model_version)
        .order_by(EnrolmentEmbedding.created_at, EnrolmentEmbedding.id)
    ).all()
    samples = []
    for row in rows:
        try:
            vector = vault.open_vector(
                row.ciphertext, associated_data("enrolment_embedding", row.id, row.model_version)
            )
            view = (
                None
                if row.phone_view is None
                else vault.open_vector(
                    row.phone_view, associated_data("enrolment_phone_view", row.id, row.model_version)
                )
            )
        except KeyShreddedError:
            continue  # left by an erasure whose commit failed after its key was destroyed: erased
        samples.append(ChannelSample(vector, str((row.quality or {}).get("channel", "")), view))
    return samples


def set_phone_voiceprint(
    session: Session, vault: Vault, speaker: Speaker, vector: npt.NDArray[np.float32] | None, model_version: str
) -> None:
    """The phone-view voiceprint, under the same key and model version as the voiceprint (None: none)."""
    speaker.phone_voiceprint = (
        None
        if vector is None
        else vault.seal_vector(
            speaker_owner(speaker.id), vector, associated_data("phone_voiceprint", speaker.id, model_version)
        )
    )
    session.flush()


def voiceprint_for_channel(
    vault: Vault, speaker: Speaker, channel: str, phone_view: bool = True, adapted: bool = False
) -> npt.NDArray[np.float32] | None:
    """The voiceprint a call on `channel` is scored against: with `adapted`, the voiceprint adapted
    with that channel's accepted calls where one exists (enrolment/adaptation.py); else the phone-view
    voiceprint for a phone call when the enrolment had one (wideband enrolment audio) and `phone_view`
    is on, else the voiceprint. Without `adapted`: the enrolment voiceprint of the channel."""
    if adapted:
        found = adaptation_repo.adapted_voiceprint(vault, speaker, channel)
        if found is not None:
            return found
    version = speaker.voiceprint_model_version
    if phone_view and channel == PHONE and speaker.phone_voiceprint is not None and version is not None:
        try:
            return vault.open_vector(speaker.phone_voiceprint, associated_data("phone_voiceprint", speaker.id, version))
        except KeyShreddedError:
            return None  # erased, as in get_voiceprint
    return get_voiceprint(vault, speaker)


def set_voiceprint(
    session: Session, vault: Vault, speaker: Speaker, vector: npt.NDArray[np.float32], model_version: str
) -> None:
    speaker.voiceprint = vault.seal_vector(
        speaker_owner(speaker.id), vector, associated_data("voiceprint", speaker.id, model_version)
    )
    speaker.voiceprint_model_version = model_version
    session.flush()


def voiceprint_versions(session: Session) -> dict[str, int]:
    """Model version -> number of voiceprints enrolled under it (one grouped count, at start-up)."""
    rows = session.execute(
        select(Speaker.voiceprint_model_version, func.count())
        .where(Speaker.voiceprint_model_version.is_not(None))
        .group_by(Speaker.voiceprint_model_version)
    ).all()
    return {str(version): int(count) for version, count in rows}


def get_voiceprint(vault: Vault, speaker: Speaker) -> npt.NDArray[np.float32] | None:
    if speaker.voiceprint is None or speaker.voiceprint_model_version is None:
        return None
    try:
        return vault.open_vector(
            speaker.voiceprint, associated_data("voiceprint", speaker.id, speaker.voiceprint_model_version)
        )
    except KeyShreddedError:
        return None  # erased: its key is gone even if the row survived a failed commit


def erase_biometrics(session: Session, speaker: Speaker) -> None:
    """Remove every embedding and the voiceprint of a speaker (the row itself stays), and destroy
    the speaker's data key when the transaction commits, so that copies of these rows left in
    database pages, WAL or backups can no longer be decrypted (voiceid.storage.keys). Every
    biometric row of the speaker (attempt embeddings included) is under that key."""
    mark_for_shredding(session, speaker_owner(speaker.id))
    session.execute(delete(EnrolmentEmbedding).where(EnrolmentEmbedding.speaker_id == speaker.id))
    session.execute(delete(VoiceFingerprint).where(VoiceFingerprint.speaker_id == speaker.id))  # replay fingerprints
    adaptation_repo.erase(session, speaker)  # the calls kept to adapt the voiceprint, and the adapted voiceprints
    speaker.voiceprint = None
    speaker.phone_voiceprint = None
    speaker.voiceprint_model_version = None
    speaker.lockout_weight = 0.0
    speaker.locked_at = None
    session.flush()


def delete_speaker(session: Session, speaker: Speaker) -> None:
    erase_biometrics(session, speaker)
    session.delete(speaker)
    session.flush()


# --- the score log ----------------------------------------------------------------------


def add_verification(session: Session, **fields: Any) -> Verification:
    row = Verification(id=new_id(), **fields)
    session.add(row)
    session.flush()
    return row


def get_verification(session: Session, verification_id: str) -> Verification | None:
    return session.get(Verification, verification_id)


@dataclass(frozen=True)
class VerificationFilter:
    speaker_ref: str | None = None
    decision: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None  # the normalised score (`score`)
    max_score: float | None = None
    reason: str | None = None  # one of voiceid.verify.decision.Reason (validated by the callers)
    cm_flagged: bool | None = None  # True: cm_check FLAGGED; False: PASSED (skipped / off match neither)
    adapted: bool | None = None  # True: the call adapted a voiceprint (ADAPTED or REVERTED); False: it never did
    adaptation: AdaptationState | None = None  # exactly this state
    # The value the call's thresholds were applied to (`decided_score`): its LLR on the calibrated
    # scale, its score where it was decided on the raw cosine. What the review desk filters on.
    min_decided: float | None = None
    max_decided: float | None = None


def decided_score() -> ColumnElement[Any]:
    """The score each row was decided on, in SQL: the calibrated LLR where its thresholds are on
    the LLR scale, else the score (raw cosine thresholds); NULL where nothing was scored."""
    return case((Verification.threshold_scale == Scale.LLR.value, Verification.llr), else_=Verification.score)


def encode_cursor(row: Verification) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not a cursor this service issued."""
    raw = base64.urlsafe_b64decode(cursor.encode()).decode()
    stamp, row_id = raw.split("|", 1)
    when = datetime.fromisoformat(stamp)
    if when.tzinfo is None or not row_id:
        raise ValueError("malformed cursor")
    return when, row_id


def _filtered(query: Select[Any], f: VerificationFilter) -> Select[Any]:
    if f.speaker_ref is not None:
        query = query.where(Verification.speaker_ref == f.speaker_ref)
    if f.decision is not None:
        query = query.where(Verification.decision == f.decision)
    if f.since is not None:
        query = query.where(Verification.created_at >= f.since)
    if f.until is not None:
        query = query.where(Verification.created_at < f.until)
    if f.min_score is not None:
        query = query.where(Verification.score >= f.min_score)
    if f.max_score is not None:
        query = query.where(Verification.score <= f.max_score)
    if f.min_decided is not None:
        query = query.where(decided_score() >= f.min_decided)
    if f.max_decided is not None:
        query = query.where(decided_score() <= f.max_decided)
    if f.reason is not None:
        # Reasons are a JSON list of fixed upper-case codes; matching the quoted code in its text
        # works the same on SQLite and PostgreSQL.
        query = query.where(cast(Verification.reasons, String).like(f'%"{f.reason}"%'))
    if f.cm_flagged is not None:
        query = query.where(Verification.cm_check == (CmCheck.FLAGGED if f.cm_flagged else CmCheck.PASSED))
    if f.adapted is not None:
        query = query.where(Verification.adaptation.is_not(None) if f.adapted else Verification.adaptation.is_(None))
    if f.adaptation is not None:
        query = query.where(Verification.adaptation == f.adaptation)
    return query


def list_verifications(
    session: Session, f: VerificationFilter, limit: int, after: tuple[datetime, str] | None = None
) -> tuple[Sequence[Verification], str | None]:
    """Newest first, keyset-paginated on (created_at, id): stable while new rows arrive."""
    query = _filtered(select(Verification), f)
    if after is not None:
        when, row_id = after
        query = query.where(
            or_(Verification.created_at < when, and_(Verification.created_at == when, Verification.id < row_id))
        )
    rows = session.scalars(
        query.order_by(Verification.created_at.desc(), Verification.id.desc()).limit(limit + 1)
    ).all()
    page = rows[:limit]
    return page, (encode_cursor(page[-1]) if len(rows) > limit else None)


def iter_verifications(session: Session, f: VerificationFilter) -> Sequence[Verification]:
    return session.scalars(
        _filtered(select(Verification), f).order_by(Verification.created_at.desc(), Verification.id.desc())
    ).all()


@dataclass(frozen=True)
class ScoredAttempt:
    """What a score chart needs of one scored attempt, on the scale its thresholds are on."""

    channel: str | None
    decision: str
    decided: float  # `decided_score`
    accept_threshold: float
    reject_threshold: float
    threshold_scale: str | None
    norm: str | None


def scored_attempts(session: Session, f: VerificationFilter, limit: int) -> list[ScoredAttempt]:
    """The newest `limit` scored attempts matching `f` (the review desk's histograms)."""
    decided = decided_score().label("decided")
    query = _filtered(
        select(
            Verification.channel,
            Verification.decision,
            decided,
            Verification.accept_threshold,
            Verification.reject_threshold,
            Verification.threshold_scale,
            Verification.norm,
        ),
        f,
    ).where(decided_score().is_not(None), Verification.accept_threshold.is_not(None))
    rows = session.execute(query.order_by(Verification.created_at.desc()).limit(limit)).all()
    return [
        ScoredAttempt(
            r.channel,
            r.decision,
            float(r.decided),
            float(r.accept_threshold),
            float(r.reject_threshold),
            r.threshold_scale,
            r.norm,
        )
        for r in rows
    ]


def decisions_since(session: Session, f: VerificationFilter, since: datetime, limit: int) -> list[tuple[datetime, str]]:
    """(created_at, decision) of the newest `limit` attempts matching `f` since `since` (decisions per day)."""
    query = _filtered(typing.cast(Select[Any], select(Verification.created_at, Verification.decision)), f)
    rows = session.execute(
        query.where(Verification.created_at >= since).order_by(Verification.created_at.desc()).limit(limit)
    ).all()
    return [(r.created_at, r.decision) for r in rows]


def retry_of_verification(session: Session, verification_id: str) -> str | None:
    """The id of the verification that retried `verification_id`, if one did (the unique index answers it)."""
    return session.scalar(select(Verification.id).where(Verification.retry_of == verification_id))


def count_verifications_since(session: Session, speaker_ref: str, since: datetime) -> int:
    """Attempts logged for one speaker since `since` (the speaker/created_at index answers it)."""
    query = (
        select(func.count())
        .select_from(Verification)
        .where(Verification.speaker_ref == speaker_ref, Verification.created_at >= since)
    )
    return int(session.scalar(query) or 0)
