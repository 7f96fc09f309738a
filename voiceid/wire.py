"""The JSON bodies a call's outcome travels in, whatever the transport: the HTTP answers of
`POST .../enrolment-audio` and `POST .../verifications`, and the `enrolment` / `decision` events of the
telephony streams (Twilio, AudioSocket, and the call-outcome webhook) carry exactly these. They are
defined once, here, below both adapters (api/ and telephony_adapter/), from the domain views."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voiceid.challenge.policy import ChallengeStatus
from voiceid.statuses import SpeakerStatus
from voiceid.verify.decision import Decision, Reason


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


class EnrolmentCmOut(BaseModel):
    """The countermeasure on one enrolment file, and on the enrolment's files together."""

    cm_score: float = Field(description="Calibrated LLR (nats) bona fide vs spoof of this file; higher = live voice")
    cm_threshold: float | None = Field(description="The threshold of this file's channel; flagged below it")
    flagged: bool = Field(description="This file alone is below the threshold")
    used: bool = Field(description="This file counts toward the voiceprint now")
    enrolment_margin: float | None = Field(
        description="Mean of (score - threshold) over all the enrolment's files: the evidence of the whole enrolment"
    )
    enrolment_flagged: bool = Field(description="The enrolment as a whole is in doubt (enrolment_margin < 0)")
    flagged_files: int


class EnrolmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    status: SpeakerStatus
    net_speech_s: float
    required_speech_s: float
    quality: dict[str, Any]
    reasons: list[Literal["WATCHLIST_MATCH", "DUPLICATE_IDENTITY", "SPOOF_SUSPECTED"]] = Field(
        default_factory=list,
        description="SPOOF_SUSPECTED: the countermeasure flagged this file, which stays out of the voiceprint while "
        "the enrolment as a whole is in doubt, or the enrolment is held for an analyst",
    )
    watchlist_hits: list[WatchlistHitOut] = Field(default_factory=list)
    countermeasure: EnrolmentCmOut | None = Field(None, description="Null when the countermeasure is off")
    next_step: Literal["SEND_MORE_AUDIO", "DONE", "WAIT_FOR_REVIEW"] = Field(
        "SEND_MORE_AUDIO",
        description="SEND_MORE_AUDIO: ask the caller for more speech; DONE: enrolled; WAIT_FOR_REVIEW: the voiceprint "
        "is held for an analyst, do not retry",
    )


class ChallengeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    status: ChallengeStatus = Field(description="PASSED, or why the challenge did not pass")
    heard: str | None = Field(None, description="Digits the recogniser heard (a free digit loop), for the record")
    confidence: float | None = Field(
        None,
        description="Recogniser score: per-frame log-likelihood ratio (nats) of the prompt against the best digit "
        "string; the words pass from VOICEID_CHALLENGE_THRESHOLD up; null when the prompt could not be aligned",
    )


class VerificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    verification_id: str
    decision: Decision
    score: float | None = Field(
        description="Normalised score (the regime's: centred cosine, AS-norm or the raw cosine), before calibration; "
        "null if nothing was scored"
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
    norm: str | None = Field(None, description="Score normalisation applied: none | s-norm | as-norm | centre")
    calibration: str | None = Field(None, description="Calibration (channel/norm/data) that set thresholds and llr")
    watchlist_hits: list[WatchlistHitOut] = Field(default_factory=list)
    cm_score: float | None = Field(
        None,
        description="Spoofing countermeasure: calibrated log-likelihood ratio (nats) bona fide vs spoof; higher = more "
        "likely a live human voice, 0 = no evidence either way; SPOOF_SUSPECTED below the channel threshold",
    )
    cm_version: str | None = Field(None, description="Countermeasure model and back-end that gave cm_score")
    cm_threshold: float | None = Field(
        None, description="The countermeasure threshold of this call's channel: flagged when cm_score is below it"
    )
    cm_flagged: bool | None = Field(
        None, description="The countermeasure flagged this call (SPOOF_SUSPECTED); null when it was not run"
    )
    cm_check: Literal["PASSED", "FLAGGED", "SKIPPED"] | None = Field(
        None,
        description="SKIPPED: not run because the call was REJECT without it (its answer could not change the "
        "decision; cm_score is then null); null when the countermeasure is off or nothing was scored",
    )
    replay_score: float | None = Field(
        None, description="Best share of fingerprint landmarks lining up with audio heard before (REPLAY_SUSPECTED)"
    )
    challenge: ChallengeOut | None = Field(
        None, description="The spoken challenge this call answered (?challenge_id=...); null without one"
    )
    adaptation: Literal["ADAPTED", "REVERTED"] | None = Field(
        None,
        description="ADAPTED: this accepted call passed every check with a margin and now adapts the speaker's "
        "voiceprint of its channel (later calls only; VOICEID_ADAPTATION); REVERTED: taken out again since",
    )
    retry_of: str | None = Field(
        None,
        description="The INCONCLUSIVE verification this call retried with more speech (?retry_of=); its "
        "accept_threshold is the retry's, set for VOICEID_TARGET_FMR x VOICEID_RETRY_FMR_FACTOR",
    )
