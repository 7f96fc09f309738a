"""Request and response bodies (they are also the OpenAPI contract at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, model_validator

from voiceid.statuses import SpeakerStatus
from voiceid.verify.decision import Decision, Reason
from voiceid.views import Role


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ApiKeyIn(BaseModel):
    role: Role
    label: str | None = Field(None, max_length=128)
    expires_at: AwareDatetime | None = Field(None, description="When the key stops working (with a time zone).")


class ApiKeyOut(BaseModel):
    key_id: str
    role: Role
    key: str = Field(description="Shown once; only its hash is stored.")


class ConsentIn(BaseModel):
    # Strict: "yes", 1 or "true" are not consent; only the JSON literal true is.
    granted: StrictBool | None = None
    text_version: str | None = Field(None, max_length=128, description="Version of the consent text agreed to.")
    channel: str | None = Field("phone", max_length=32)


class SpeakerIn(BaseModel):
    consent: ConsentIn | None = None


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    granted: bool
    text_version: str | None
    channel: str | None
    granted_at: datetime | None
    withdrawn_at: datetime | None


class SpeakerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    speaker_id: str
    status: SpeakerStatus
    net_speech_s: float
    required_speech_s: float
    model_version: str | None
    consent: ConsentOut
    created_at: datetime
    locked: bool


class WatchlistHitOut(BaseModel):
    entry_id: str
    label: str
    llr: float | None = Field(
        description="Calibrated LLR (natural log), probe vs watchlist voice, on the pair's channel scale "
        "(null only on hits logged before calibrated screening)."
    )
    raw_score: float = Field(description="Cosine between the probe and the watchlist voice, for diagnosis.")
    scale: str | None = Field(
        None, description="phone | wideband | cross: the channel calibration the pair was scored with."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        # Hits logged before calibrated screening carry only the raw cosine, as "score".
        if isinstance(data, dict) and "raw_score" not in data and "score" in data:
            return {**data, "raw_score": data["score"], "llr": None}
        return data


class EnrolmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    status: SpeakerStatus
    net_speech_s: float
    required_speech_s: float
    quality: dict[str, Any]
    reasons: list[Literal["WATCHLIST_MATCH", "DUPLICATE_IDENTITY"]] = Field(default_factory=list)
    watchlist_hits: list[WatchlistHitOut] = Field(default_factory=list)


class VerificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    verification_id: str
    decision: Decision
    score: float | None = Field(
        description="Normalised score (AS-norm), before calibration; null if nothing was scored"
    )
    accept_threshold: float | None = Field(
        description="ACCEPT when the value on `threshold_scale` is >= this; the same on every call of a channel. "
        "Null where nothing was scored."
    )
    reject_threshold: float | None = Field(description="REJECT when the value on `threshold_scale` is < this")
    threshold_scale: str | None = Field(
        None, description="What the thresholds are on: llr (calibrated, the default) or cosine (uncalibrated)"
    )
    net_speech_s: float | None
    reasons: list[Reason]
    model_version: str
    channel: str | None = Field(description="phone (G.711 / <= 8 kHz) or wideband; selects cohort and calibration")
    raw_score: float | None = Field(None, description="Cosine similarity before normalisation")
    llr: float | None = Field(
        None,
        description="Calibrated log-likelihood ratio (natural log), same vs different speaker, weighing the score "
        "by the net speech behind it; the decision is taken on it",
    )
    norm: str | None = Field(None, description="Score normalisation applied: none | s-norm | as-norm")
    calibration: str | None = Field(None, description="Calibration (channel/norm/data) that set thresholds and llr")
    watchlist_hits: list[WatchlistHitOut] = Field(default_factory=list)
    cm_score: float | None = Field(
        None,
        description="Spoofing countermeasure: calibrated log-likelihood ratio (nats) bona fide vs spoof; higher = more "
        "likely a live human voice, 0 = no evidence either way; SPOOF_SUSPECTED below the channel threshold",
    )
    cm_version: str | None = Field(None, description="Countermeasure model and back-end that gave cm_score")
    replay_score: float | None = Field(
        None, description="Best share of fingerprint landmarks lining up with audio heard before (REPLAY_SUSPECTED)"
    )


class VerificationRecord(VerificationOut):
    speaker_id: str
    quality: dict[str, Any] | None
    created_at: datetime


class VerificationPageOut(BaseModel):
    items: list[VerificationRecord]
    next_cursor: str | None


# --- keys, consent ledger, audit (issue 10) ----------------------------------------------------


class ApiKeyInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    key_id: str
    role: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool = Field(description="The key made from VOICEID_ADMIN_KEY.")
    active: bool


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    created_at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPageOut(BaseModel):
    items: list[AuditEventOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page.")


class ConsentEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    action: str = Field(description="GRANTED | WITHDRAWN | ERASED")
    text_version: str | None
    channel: str | None
    api_key_id: str | None = Field(description="The key that recorded it.")
    recorded_at: datetime
