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
    # 0008_fraud_desk: the channel the entry's samples came from, and how many are pooled in it.
    channel: Mapped[str | None] = mapped_column(String(16), default=None)
    samples: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


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

    __table_args__ = (
        Index("ix_review_items_status_created", "status", "created_at"),
        Index("ix_review_items_cause", "kind", "speaker_ref", "matched_ref", "status"),  # 0008_fraud_desk
    )


class FraudGeneration(Base):
    """A counter bumped in the same transaction as every watchlist change: each process compares it
    with the generation its in-memory index was loaded at, so a change made by another worker is
    seen on the next screen without reloading the whole list on every call."""

    __tablename__ = "fraud_generations"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)


# --- fraud desk (migration 0008_fraud_desk) ----------------------------------------------------


class WatchlistSample(Base):
    """One flagged call (or recording) pooled into a watchlist entry. Its own encrypted copy, so the
    pool can be rebuilt when a sample is added; a verification is a sample at most once."""

    __tablename__ = "watchlist_samples"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("watchlist_entries.id", ondelete="CASCADE"), index=True)
    verification_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    channel: Mapped[str | None] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
