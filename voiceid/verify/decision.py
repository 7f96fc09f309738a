"""Calibrated score + thresholds + net speech -> decision and the reasons for it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Decision(StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_ENROLLED = "NOT_ENROLLED"
    OPTED_OUT = "OPTED_OUT"
    LOCKED = "LOCKED"


class Reason(StrEnum):
    SCORE_ABOVE_ACCEPT_THRESHOLD = "SCORE_ABOVE_ACCEPT_THRESHOLD"
    SCORE_BELOW_REJECT_THRESHOLD = "SCORE_BELOW_REJECT_THRESHOLD"
    SCORE_BETWEEN_THRESHOLDS = "SCORE_BETWEEN_THRESHOLDS"
    INSUFFICIENT_SPEECH = "INSUFFICIENT_SPEECH"
    LOCKED_OUT = "LOCKED_OUT"
    NO_VOICEPRINT = "NO_VOICEPRINT"
    MODEL_VERSION_MISMATCH = "MODEL_VERSION_MISMATCH"
    SPEAKER_OPTED_OUT = "SPEAKER_OPTED_OUT"
    LOW_QUALITY_AUDIO = "LOW_QUALITY_AUDIO"  # no longer decided on (calibration weighs quality); kept for old rows
    RATE_LIMITED = "RATE_LIMITED"
    WATCHLIST_MATCH = "WATCHLIST_MATCH"
    ENROLMENT_UNDER_REVIEW = "ENROLMENT_UNDER_REVIEW"
    VOICEPRINT_EXPIRED = "VOICEPRINT_EXPIRED"  # erased after going unused for the retention period
    # The voice of this call was heard on several other identities within days (fraud/links.py).
    LINKED_VOICE = "LINKED_VOICE"
    SPOOF_SUSPECTED = "SPOOF_SUSPECTED"  # the countermeasure flags synthetic / converted speech
    REPLAY_SUSPECTED = "REPLAY_SUSPECTED"  # the audio replays a recording already heard for this speaker
    # A stream scored audio, then ended without its decision (dropped, abandoned): counted all the same.
    STREAM_ABANDONED = "STREAM_ABANDONED"
    # Spoken challenge (voiceid/challenge/): the words of the call against the prompt the IVR played.
    CHALLENGE_PASSED = "CHALLENGE_PASSED"
    CHALLENGE_MISMATCH = "CHALLENGE_MISMATCH"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    CHALLENGE_USED = "CHALLENGE_USED"
    CHALLENGE_UNKNOWN = "CHALLENGE_UNKNOWN"
    CHALLENGE_REQUIRED = "CHALLENGE_REQUIRED"  # policy: this call needs a challenge before it can be accepted


@dataclass(frozen=True)
class Thresholds:
    accept: float
    reject: float

    def __post_init__(self) -> None:
        if self.reject > self.accept:
            raise ValueError("the reject threshold must not exceed the accept threshold")


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    reasons: tuple[Reason, ...]


def decide(value: float, thresholds: Thresholds, net_speech_s: float, min_speech_s: float) -> Outcome:
    """Decision for a scored probe. `value` is what the thresholds are on: the calibrated LLR
    (or the score where no calibration applies).

    The calibration already discounts short audio, so there is no quality switch here; only below
    `min_speech_s` is a probe INCONCLUSIVE whatever it scored (the score reason is still reported,
    so an analyst can see which way it leaned).
    """
    if value >= thresholds.accept:
        by_score, reason = Decision.ACCEPT, Reason.SCORE_ABOVE_ACCEPT_THRESHOLD
    elif value < thresholds.reject:
        by_score, reason = Decision.REJECT, Reason.SCORE_BELOW_REJECT_THRESHOLD
    else:
        by_score, reason = Decision.INCONCLUSIVE, Reason.SCORE_BETWEEN_THRESHOLDS
    if net_speech_s < min_speech_s:
        return Outcome(Decision.INCONCLUSIVE, (Reason.INSUFFICIENT_SPEECH, reason))
    return Outcome(by_score, (reason,))


def decide_many(
    values: npt.ArrayLike, thresholds: Thresholds, net_speech_s: npt.ArrayLike, min_speech_s: float
) -> npt.NDArray[np.str_]:
    """`decide` over arrays of trials (evaluation): the decision names, same rule."""
    v = np.asarray(values, dtype=np.float64)
    speech = np.broadcast_to(np.asarray(net_speech_s, dtype=np.float64), v.shape)
    out = np.full(v.shape, Decision.INCONCLUSIVE.value, dtype=object)
    enough = speech >= min_speech_s
    out[enough & (v >= thresholds.accept)] = Decision.ACCEPT.value
    out[enough & (v < thresholds.reject)] = Decision.REJECT.value
    return out.astype(str)


def apply_watchlist(outcome: Outcome, hit: bool, force_reject: bool) -> Outcome:
    """The outcome after the watchlist screen.

    A hit is always reported (WATCHLIST_MATCH is added to the reasons). With `force_reject` it also
    turns the decision into REJECT whatever the claimed-identity score said: a known fraud voice
    that also scores well against the account is the attack the watchlist exists for. The score
    reasons stay, so the log shows what the score alone would have decided.
    """
    if not hit:
        return outcome
    decision = Decision.REJECT if force_reject else outcome.decision
    return Outcome(decision, (*outcome.reasons, Reason.WATCHLIST_MATCH))


def abandon(outcome: Outcome) -> Outcome:
    """The outcome logged for a stream that scored audio and then ended without its decision
    (the line dropped, the client went away). It is an attempt like any other - counted toward
    lockout and the rate limit - or a prober could listen to the interims and hang up before every
    decision for free. It is never an ACCEPT: no one was told, and an accept would lift the lockout
    weight a prober has built up."""
    decision = Decision.INCONCLUSIVE if outcome.decision is Decision.ACCEPT else outcome.decision
    return Outcome(decision, (*outcome.reasons, Reason.STREAM_ABANDONED))
