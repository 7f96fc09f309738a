"""The service's vocabulary and what it returns: roles and the frozen views the API,
the CLI and the telephony adapters serialise. Kept apart from `service.py` so that adapters and small
services (population cohort, consent ledger, fraud desk) can name them without importing the service.
The statuses stored in the database are in `statuses.py`, beside the tables that use them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.views import scale_name
from voiceid.statuses import ReviewKind, SpeakerStatus
from voiceid.storage.models import Verification
from voiceid.verify.decision import Decision, Outcome
from voiceid.verify.policy import Scale

SPEAKER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ISSUED_ID = re.compile(r"^[0-9a-f]{32}$")  # the ids this service issues (repositories.new_id)
# Refusals that mean the caller sent no usable speech: they count toward lockout (weighted).
UNUSABLE_AUDIO = frozenset({ErrorCode.AUDIO_TOO_SHORT, ErrorCode.NO_SPEECH, ErrorCode.EMPTY_AUDIO})


class Role(StrEnum):
    IVR = "ivr"
    ENROLMENT = "enrolment"
    ANALYST = "analyst"
    ADMIN = "admin"


@dataclass(frozen=True)
class Consent:
    granted: bool
    text_version: str | None
    channel: str | None
    granted_at: datetime | None = None
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class SpeakerView:
    speaker_id: str
    status: SpeakerStatus
    net_speech_s: float
    required_speech_s: float
    model_version: str | None
    consent: Consent
    created_at: datetime
    locked: bool


class NextStep(StrEnum):
    """What the IVR should do after an enrolment step."""

    SEND_MORE_AUDIO = "SEND_MORE_AUDIO"  # not enough usable speech yet: ask the caller to keep talking
    DONE = "DONE"  # enrolled
    WAIT_FOR_REVIEW = "WAIT_FOR_REVIEW"  # voiceprint built but held for an analyst; tell the caller, do not retry


@dataclass(frozen=True)
class EnrolmentStep:
    status: SpeakerStatus
    net_speech_s: float
    required_speech_s: float
    quality: dict[str, Any]
    reasons: list[ReviewKind] = field(default_factory=list)
    watchlist_hits: list[dict[str, Any]] = field(default_factory=list)
    countermeasure: dict[str, Any] | None = None  # antispoof.checks.EnrolmentCm.to_dict()
    next_step: NextStep = NextStep.SEND_MORE_AUDIO


@dataclass(frozen=True)
class VerificationView:
    verification_id: str
    speaker_id: str
    decision: str
    score: float | None
    accept_threshold: float | None  # only where something was scored
    reject_threshold: float | None
    net_speech_s: float | None
    reasons: list[str]
    model_version: str
    channel: str | None
    quality: dict[str, Any] | None
    created_at: datetime
    raw_score: float | None = None
    llr: float | None = None
    norm: str | None = None
    calibration: str | None = None
    watchlist_hits: list[dict[str, Any]] = field(default_factory=list)
    threshold_scale: str | None = None
    cm_score: float | None = None  # calibrated bona fide LLR (nats), higher = more likely bona fide
    cm_version: str | None = None
    replay_score: float | None = None  # best fingerprint match with earlier audio of the speaker (0..1)
    cm_threshold: float | None = None  # the CM threshold of the call's channel
    cm_check: str | None = None  # CmCheck: FLAGGED | PASSED | SKIPPED; None when the CM is off

    @property
    def decided_score(self) -> float | None:
        """The value its thresholds were applied to: the calibrated LLR where they are on the LLR
        scale, else the score (raw cosine thresholds). None where nothing was scored."""
        return self.llr if self.threshold_scale == Scale.LLR else self.score

    @property
    def decided_scale(self) -> str | None:
        """The name of `decided_score`'s scale, as the review desk labels it."""
        if self.threshold_scale is None:
            return None
        return scale_name(self.threshold_scale, self.norm)

    @property
    def cm_flagged(self) -> bool | None:
        return None if self.cm_check in (None, "SKIPPED") else self.cm_check == "FLAGGED"

    challenge_id: str | None = None  # the spoken challenge this call answered (issue 22)
    challenge_status: str | None = None
    challenge_prompt: str | None = None
    challenge_heard: str | None = None
    challenge_score: float | None = None
    adaptation: str | None = None  # AdaptationState: ADAPTED | REVERTED; None: the call adapted nothing
    retry_of: str | None = None  # the INCONCLUSIVE verification this call retried (?retry_of=)

    @property
    def challenge(self) -> ChallengeResult | None:
        if self.challenge_status is None:
            return None
        return ChallengeResult(self.challenge_status, self.challenge_heard, self.challenge_score)

    @classmethod
    def from_row(cls, row: Verification) -> VerificationView:
        return cls(
            verification_id=row.id,
            speaker_id=row.speaker_ref,
            decision=row.decision,
            score=row.score,
            accept_threshold=row.accept_threshold,
            reject_threshold=row.reject_threshold,
            net_speech_s=row.net_speech_s,
            reasons=list(row.reasons),
            model_version=row.model_version,
            channel=row.channel,
            quality=row.quality,
            created_at=row.created_at,
            raw_score=row.raw_score,
            llr=row.llr,
            norm=row.norm,
            calibration=row.calibration,
            watchlist_hits=list(row.watchlist_hits or []),
            threshold_scale=row.threshold_scale,
            cm_score=row.cm_score,
            cm_version=row.cm_version,
            replay_score=row.replay_score,
            cm_threshold=row.cm_threshold,
            cm_check=None if row.cm_check is None else str(row.cm_check),
            challenge_id=row.challenge_id,
            challenge_status=row.challenge_status,
            challenge_prompt=row.challenge_prompt,
            challenge_heard=row.challenge_heard,
            challenge_score=row.challenge_score,
            adaptation=None if row.adaptation is None else str(row.adaptation),
            retry_of=row.retry_of,
        )


@dataclass(frozen=True)
class ChallengeResult:
    """A verification's spoken challenge as the API returns it."""

    status: str  # PASSED | MISMATCH | EXPIRED | USED | UNKNOWN
    heard: str | None
    confidence: float | None


@dataclass(frozen=True)
class VerificationPage:
    items: list[VerificationView]
    next_cursor: str | None


class Leaning(StrEnum):
    """What a stream's interim reveals: a coarse state, never the score (an exact score would be an
    oracle for hill-climbing a synthetic voice toward acceptance)."""

    LEANING_ACCEPT = "LEANING_ACCEPT"
    LEANING_REJECT = "LEANING_REJECT"
    UNDECIDED = "UNDECIDED"


@dataclass(frozen=True)
class Preview:
    """The outcome a stream would get now, not logged (streaming interims). `score` stays inside
    the process (it decides when to stop early); only `leaning` is sent to the caller's side."""

    score: float | None
    outcome: Outcome

    @property
    def leaning(self) -> Leaning:
        if self.outcome.decision is Decision.ACCEPT:
            return Leaning.LEANING_ACCEPT
        if self.outcome.decision in (Decision.REJECT, Decision.LOCKED, Decision.OPTED_OUT, Decision.NOT_ENROLLED):
            return Leaning.LEANING_REJECT
        return Leaning.UNDECIDED


@dataclass
class ServiceCounters:
    """Hooks for metrics; the API wires Prometheus in, the CLI leaves them as no-ops."""

    on_decision: Callable[[str], None] = field(default=lambda decision: None)
    on_inference: Callable[[float], None] = field(default=lambda seconds: None)


def check_issued_id(value: str, field: str, issued_by: str) -> str:
    """`value` has the form of an id this service issued (32 lower-case hex characters,
    `repositories.new_id`), else a 422 naming `field` and where such an id comes from."""
    if not ISSUED_ID.match(value):
        raise VoiceIdError(
            ErrorCode.INVALID_REQUEST, f"{field} must be the 32 lower-case hex characters {issued_by}", field=field
        )
    return value


def validate_speaker_id(speaker_id: str) -> str:
    if not SPEAKER_ID_PATTERN.match(speaker_id):
        raise VoiceIdError(ErrorCode.INVALID_SPEAKER_ID, "speaker_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return speaker_id
