"""SQLAlchemy tables. Biometric blobs live only in `enrolment_embeddings` and `speakers.voiceprint`,
both encrypted; the score log (`verifications`) holds no vector and survives speaker erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the database: SQLite has no time zones and
    PostgreSQL then compares the same way, so cursors and filters behave alike on both."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Speaker(Base):
    __tablename__ = "speakers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_ref: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    consent_granted: Mapped[bool]
    consent_text_version: Mapped[str | None] = mapped_column(String(128))
    consent_channel: Mapped[str | None] = mapped_column(String(32))
    consent_at: Mapped[datetime | None]
    consent_withdrawn_at: Mapped[datetime | None]
    voiceprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    voiceprint_model_version: Mapped[str | None] = mapped_column(String(128))
    consecutive_rejects: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EnrolmentEmbedding(Base):
    __tablename__ = "enrolment_embeddings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    net_speech_s: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Verification(Base):
    """One row per verification decision. `speaker_ref` is the client's reference, not a
    foreign key, so the log outlives an erased speaker (it never held biometric data)."""

    __tablename__ = "verifications"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_ref: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    raw_score: Mapped[float | None] = mapped_column(Float)
    llr: Mapped[float | None] = mapped_column(Float)
    norm: Mapped[str | None] = mapped_column(String(16))
    calibration: Mapped[str | None] = mapped_column(String(128))
    accept_threshold: Mapped[float] = mapped_column(Float)
    reject_threshold: Mapped[float] = mapped_column(Float)
    net_speech_s: Mapped[float | None] = mapped_column(Float)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(16))
    quality: Mapped[dict[str, Any] | None]
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    watchlist_hits: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)  # 0003_fraud
    # 0006_antispoof: countermeasure score (calibrated log-likelihood ratio bona fide vs spoof, nats;
    # higher = more likely bona fide), the detector that gave it, and the best replay match.
    cm_score: Mapped[float | None] = mapped_column(Float, default=None)
    cm_version: Mapped[str | None] = mapped_column(String(64), default=None)
    replay_score: Mapped[float | None] = mapped_column(Float, default=None)

    __table_args__ = (
        Index("ix_verifications_created", "created_at", "id"),
        Index("ix_verifications_speaker_created", "speaker_ref", "created_at"),
    )


class Call(Base):
    """A telephone call bound to a speaker before its audio arrives (Asterisk AudioSocket), and its
    outcome once decided. The outcome is the same JSON event a Twilio stream receives; it holds no
    biometric data, so it may outlive the speaker like the score log does."""

    __tablename__ = "calls"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the call UUID, canonical lower-case form
    speaker_ref: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- fraud workspace (migration 0003_fraud) ------------------------------------------------


class AttemptEmbedding(Base):
    """The (encrypted) probe embedding of one scored verification, kept until `expires_at` so an
    analyst can flag the attempt; purged by `voiceid purge` and erased with the claimed speaker."""

    __tablename__ = "attempt_embeddings"
    verification_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_ref: Mapped[str] = mapped_column(String(128), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WatchlistEntry(Base):
    """A known fraud voice. Its embedding is a copy (own row id in the associated data), so it
    outlives the attempt's retention and the erasure of the identity it was used against."""

    __tablename__ = "watchlist_entries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(2000))
    source: Mapped[str] = mapped_column(String(16))  # "verification" | "audio"
    verification_id: Mapped[str | None] = mapped_column(String(32))
    speaker_ref: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewItem(Base):
    """Something an analyst must look at: a held duplicate enrolment or a watchlist hit at enrolment."""

    __tablename__ = "review_items"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    speaker_ref: Mapped[str] = mapped_column(String(128))
    matched_ref: Mapped[str] = mapped_column(String(128))
    score: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_review_items_status_created", "status", "created_at"),)


class FraudGeneration(Base):
    """A counter bumped in the same transaction as every watchlist change: each process compares it
    with the generation its in-memory index was loaded at, so a change made by another worker is
    seen on the next screen without reloading the whole list on every call."""

    __tablename__ = "fraud_generations"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)


# --- presentation-attack detection (migration 0006_antispoof) ------------------------------


class VoiceFingerprint(Base):
    """The (encrypted) acoustic fingerprint of audio heard for a speaker: an enrolment utterance (kept
    with the enrolment, `expires_at` null) or a scored verification (kept as long as its attempt
    embedding). A probe that lines up with one of them is a replay. Derived biometric data: erased
    with the speaker's biometrics."""

    __tablename__ = "voice_fingerprints"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "enrolment" | "attempt"
    verification_id: Mapped[str | None] = mapped_column(String(32))
    recipe: Mapped[str] = mapped_column(String(16))  # fingerprint recipe version
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
