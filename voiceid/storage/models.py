"""SQLAlchemy tables. Biometric blobs live only in `enrolment_embeddings` (`ciphertext`, `phone_view`) and
`speakers` (`voiceprint`, `phone_voiceprint`), all encrypted; the score log (`verifications`) holds no
vector and survives speaker erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from voiceid.statuses import (
    AdaptationState,
    CallMode,
    CallStatus,
    CmCheck,
    DeliveryStatus,
    ReviewKind,
    ReviewStatus,
    SpeakerStatus,
)

E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E], Generic[E]):
    """A StrEnum stored as its value in a VARCHAR (the columns' type since their migration, so no
    schema change): rows load as enum members, and a value outside the enum is refused on write."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


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
    # 0005 (key lifecycle): a revoked key stays listed, for the audit trail; `bootstrap` marks the
    # key made from VOICEID_ADMIN_KEY, revoked when the variable changes.
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    bootstrap: Mapped[bool] = mapped_column(default=False)


class Speaker(Base):
    __tablename__ = "speakers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_ref: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[SpeakerStatus] = mapped_column(EnumText(SpeakerStatus, 16))
    consent_granted: Mapped[bool]
    consent_text_version: Mapped[str | None] = mapped_column(String(128))
    consent_channel: Mapped[str | None] = mapped_column(String(32))
    consent_at: Mapped[datetime | None]
    consent_withdrawn_at: Mapped[datetime | None]
    voiceprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    voiceprint_model_version: Mapped[str | None] = mapped_column(String(128))
    # Failed attempts in a row, weighted (REJECT 1, INCONCLUSIVE / unusable audio less): 0004_policy.
    lockout_weight: Mapped[float] = mapped_column(Float, default=0.0)
    locked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    voiceprint_used_at: Mapped[datetime | None] = mapped_column(default=None)  # 0005: retention clock
    # 0019b: the voiceprint of the enrolment audio's G.711 view, scored against phone calls when the
    # enrolment came over a wideband line (sealed like `voiceprint`, same model version and key).
    phone_voiceprint: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # 0024_adaptation: the voiceprints adapted with accepted calls (enrolment/adaptation.py), one per
    # channel the calls came on; null until a call adapts it. Sealed like `voiceprint`; the enrolment
    # voiceprints above stay as enrolled (the anchor every adapting call is held to).
    adapted_voiceprint: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # wideband calls
    adapted_phone_voiceprint: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # phone calls


class EnrolmentEmbedding(Base):
    __tablename__ = "enrolment_embeddings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    net_speech_s: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0019b: the sealed embedding of this utterance's G.711 view (wideband audio only).
    phone_view: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


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
    # Only on rows where something was scored; `threshold_scale` says what they are on (0004_policy).
    accept_threshold: Mapped[float | None] = mapped_column(Float)
    reject_threshold: Mapped[float | None] = mapped_column(Float)
    threshold_scale: Mapped[str | None] = mapped_column(String(8))
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
    # 0018_cm_check: the CM threshold of the call's channel, and FLAGGED / PASSED / SKIPPED (CmCheck).
    cm_threshold: Mapped[float | None] = mapped_column(Float, default=None)
    cm_check: Mapped[CmCheck | None] = mapped_column(EnumText(CmCheck, 8), default=None)
    # 0022_challenges (issue 22): the spoken challenge of this call, the prompt and what was heard.
    challenge_id: Mapped[str | None] = mapped_column(String(32), default=None)
    challenge_status: Mapped[str | None] = mapped_column(String(16), default=None)
    challenge_prompt: Mapped[str | None] = mapped_column(String(16), default=None)
    challenge_heard: Mapped[str | None] = mapped_column(String(64), default=None)
    challenge_score: Mapped[float | None] = mapped_column(Float, default=None)
    # 0024_adaptation: ADAPTED when this call adapted the speaker's voiceprint, REVERTED once that was undone.
    adaptation: Mapped[AdaptationState | None] = mapped_column(EnumText(AdaptationState, 16), default=None)
    # 0025_retry: the INCONCLUSIVE verification this one retried with more speech (?retry_of=); unique,
    # so a verification is retried at most once even by two replicas at the same moment.
    retry_of: Mapped[str | None] = mapped_column(String(32), default=None)

    __table_args__ = (
        Index("ix_verifications_created", "created_at", "id"),
        Index("ux_verifications_retry_of", "retry_of", unique=True),
        Index("ix_verifications_cm_check_created", "cm_check", "created_at"),
        Index("ix_verifications_speaker_created", "speaker_ref", "created_at"),
    )


class Call(Base):
    """A telephone call bound to a speaker before its audio arrives (Asterisk AudioSocket), and its
    outcome once decided. The outcome is the same JSON event a Twilio stream receives; it holds no
    biometric data, so it may outlive the speaker like the score log does."""

    __tablename__ = "calls"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the call UUID, canonical lower-case form
    speaker_ref: Mapped[str] = mapped_column(String(128))
    mode: Mapped[CallMode] = mapped_column(EnumText(CallMode, 8))
    status: Mapped[CallStatus] = mapped_column(EnumText(CallStatus, 16))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[dict[str, Any] | None]
    challenge_id: Mapped[str | None] = mapped_column(String(32), default=None)  # 0022_challenges
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The caller's number or SIP AOR (migration 0023): SIPREC scores that participant's stream.
    caller: Mapped[str | None] = mapped_column(String(256), default=None)


class AdaptationCall(Base):
    """One accepted call kept to adapt its speaker's voiceprint of its channel (enrolment/adaptation.py,
    migration 0024_adaptation). Its embedding is sealed under the speaker's data key like the enrolment
    embeddings and erased with them; it expires with the attempt embeddings, and an analyst may remove it
    (a flagged call): the adapted voiceprint is then rebuilt from what remains."""

    __tablename__ = "adaptation_calls"
    verification_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


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
    kind: Mapped[ReviewKind] = mapped_column(EnumText(ReviewKind, 32))
    status: Mapped[ReviewStatus] = mapped_column(EnumText(ReviewStatus, 16))
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


# --- replicas: change feed, webhook outbox, pinned decision data (migration 0007) -------------


class ChangeCounter(Base):
    """The database revision of the biometric population (voiceprints and watchlist). Every change
    bumps it in the change's own transaction; the row lock it takes orders writers, so a reader that
    sees revision R knows every change numbered R or below has committed."""

    __tablename__ = "change_counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    # Feed rows below this revision were pruned: a cache holding less must reload from scratch.
    pruned_below: Mapped[int] = mapped_column(BigInteger, default=0)


class ChangeEntry(Base):
    """One changed object (a speaker's voiceprint or a watchlist entry) at one revision."""

    __tablename__ = "change_feed"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The durable outbox of call-outcome webhooks: written in the transaction that stores the
    outcome, delivered by the worker with retries and backoff."""

    __tablename__ = "webhook_outbox"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]]
    status: Mapped[DeliveryStatus] = mapped_column(EnumText(DeliveryStatus, 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)


class PinnedDecisionData(Base):
    """Content hashes of the cohort and calibration every replica must decide with (`voiceid db
    upgrade` pins them; `serve` on PostgreSQL refuses to start with other data)."""

    __tablename__ = "decision_data"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- decision policy (migration 0004_policy) ---------------------------------------------------


class SelfCalibrationSnapshot(Base):
    """The self-calibration fitted on the population's own non-target trials (verify/selfcal.py):
    per channel and band, the shift of the regime calibration it corrects. No biometric data: counts,
    shifts and the ids of what it was fitted against. Every replica applies the newest one."""

    __tablename__ = "self_calibrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(32))  # content hash of `body`
    cohort_snapshot_id: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CohortSnapshot(Base):
    """The members of the score-normalisation cohort, as refreshed in the background: speaker ids,
    not vectors, so an erased speaker drops out of the cohort at once and no copy of a voiceprint
    outlives its erasure. Every replica scores against the newest snapshot of its model version."""

    __tablename__ = "cohort_snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(128))
    members: Mapped[list[str]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_cohort_snapshots_model_id", "model_version", "id"),)


# --- consent ledger and audit trail (migration 0005) -----------------------------------------


class ConsentEvent(Base):
    """One grant or withdrawal of consent, never updated or deleted: the ledger outlives the
    speaker's erasure (it holds no biometric data) as the record of the lawful basis."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    speaker_ref: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # voiceid.consent.ConsentAction
    text_version: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_consent_events_speaker", "speaker_ref", "id"),)


class AuditEvent(Base):
    """One administrative or analyst action. `hash` covers `prev_hash` and the row's canonical
    content, so editing or deleting any row breaks the chain (voiceid.services.audit)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(256))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last sequence number and hash, updated with each append under a row lock: it
    serialises appenders on PostgreSQL and shows a deleted last row."""

    __tablename__ = "audit_head"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ReviewSessionRow(Base):
    """A signed-in review-page session. The cookie is signed and carries a random id; the page
    honours it only while this row exists, so signing out (or an admin ending sessions) takes
    effect at once instead of when the cookie's 8 h lifetime runs out. Only a hash of the id is
    stored: a copy of the table cannot be replayed as cookies."""

    __tablename__ = "review_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


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


# --- persisted ANN index snapshots (migration 0010_index_snapshots) ---------------------------


class IndexSnapshotRow(Base):
    """A serialised 1:N index (HNSW graph + vectors + row keys) of one kind and model version, as of
    change-feed revision `revision`. Written by the worker's `index-snapshot` job so a replica's cold
    start loads it instead of decrypting the population and building the graph itself. Its chunks
    are sealed under a data key of the snapshot's own (owner `index:<id>`), destroyed with it."""

    __tablename__ = "index_snapshots"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # voiceid.storage.changes.ChangeKind
    model_version: Mapped[str] = mapped_column(String(128))
    revision: Mapped[int] = mapped_column(BigInteger)
    vectors: Mapped[int] = mapped_column(Integer)  # live vectors in the index
    byte_size: Mapped[int] = mapped_column(BigInteger)  # of the plaintext payload
    sha256: Mapped[str] = mapped_column(String(64))  # of the plaintext payload
    state: Mapped[str] = mapped_column(String(16))  # voiceid.storage.index_repo.SnapshotState
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_index_snapshots_kind_state", "kind", "model_version", "state"),)


class IndexSnapshotChunk(Base):
    """One sealed piece (at most VOICEID_INDEX_SNAPSHOT_CHUNK_BYTES of plaintext) of a snapshot."""

    __tablename__ = "index_snapshot_chunks"
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("index_snapshots.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Challenge(Base):
    """A spoken challenge issued to one speaker (issue 22): a random prompt, single use, short-lived.
    `speaker_ref` is the client's reference, like the score log's: a row holds no biometric data."""

    __tablename__ = "challenges"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # secrets.token_hex(16)
    speaker_ref: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(String(16))  # digits, e.g. "471902"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    verification_id: Mapped[str | None] = mapped_column(String(32), default=None)
    api_key_id: Mapped[str | None] = mapped_column(String(32), default=None)

    __table_args__ = (Index("ix_challenges_speaker_expires", "speaker_ref", "expires_at"),)
