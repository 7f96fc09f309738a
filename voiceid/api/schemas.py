"""Request and response bodies (they are also the OpenAPI contract at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from voiceid.challenge.policy import ChallengeKind
from voiceid.services.views import Role
from voiceid.statuses import SpeakerStatus
from voiceid.wire import VerificationOut


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


class VerificationRecord(VerificationOut):
    speaker_id: str
    quality: dict[str, Any] | None
    created_at: datetime
    challenge_id: str | None = Field(None, description="The spoken challenge the call answered")
    challenge_prompt: str | None = Field(None, description="Digits the caller was asked to say (analysts only)")


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


class ChallengeIssuedOut(BaseModel):
    """A spoken challenge (issue 22): the IVR plays `prompt` (or speaks `prompt_text`) and sends the
    caller's answer to POST /v1/speakers/{id}/verifications?challenge_id=..."""

    model_config = ConfigDict(from_attributes=True)
    challenge_id: str
    kind: ChallengeKind
    prompt: str = Field(description='What the caller must say, digit by digit, e.g. "4 7 1 9 0 2"')
    prompt_text: str = Field(description='The prompt in words for a TTS engine, e.g. "four seven one nine zero two"')
    expires_at: datetime = Field(description="Single use, and only until then")
