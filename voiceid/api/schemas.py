"""Request and response bodies (they are also the OpenAPI contract at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from voiceid.service import Role


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ApiKeyIn(BaseModel):
    role: Role
    label: str | None = Field(None, max_length=128)


class ApiKeyOut(BaseModel):
    key_id: str
    role: Role
    key: str = Field(description="Shown once; only its hash is stored.")


class ConsentIn(BaseModel):
    granted: bool | None = None
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
    status: str = Field(description="ENROLLING | ENROLLED | OPTED_OUT")
    net_speech_s: float
    required_speech_s: float
    model_version: str | None
    consent: ConsentOut
    created_at: datetime
    locked: bool


class WatchlistHitOut(BaseModel):
    entry_id: str
    label: str
    score: float = Field(description="Raw cosine between the probe and the watchlist entry.")


class EnrolmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    status: str = Field(description="ENROLLING | ENROLLED | REVIEW_REQUIRED")
    net_speech_s: float
    required_speech_s: float
    quality: dict[str, Any]
    reasons: list[str] = Field(default_factory=list, description="WATCHLIST_MATCH | DUPLICATE_IDENTITY")
    watchlist_hits: list[WatchlistHitOut] = Field(default_factory=list)


class VerificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    verification_id: str
    decision: str = Field(description="ACCEPT | REJECT | INCONCLUSIVE | NOT_ENROLLED | OPTED_OUT | LOCKED")
    score: float | None = Field(description="Score the thresholds apply to (after score normalisation)")
    accept_threshold: float
    reject_threshold: float
    net_speech_s: float | None
    reasons: list[str]
    model_version: str
    channel: str | None = Field(description="phone (G.711 / <= 8 kHz) or wideband; selects cohort and calibration")
    raw_score: float | None = Field(None, description="Cosine similarity before normalisation")
    llr: float | None = Field(None, description="Calibrated log-likelihood ratio (natural log), same vs different")
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
