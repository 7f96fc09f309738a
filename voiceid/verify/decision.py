"""Score + thresholds + net speech -> decision and the reasons for it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    LOW_QUALITY_AUDIO = "LOW_QUALITY_AUDIO"
    WATCHLIST_MATCH = "WATCHLIST_MATCH"
    ENROLMENT_UNDER_REVIEW = "ENROLMENT_UNDER_REVIEW"
    SPOOF_SUSPECTED = "SPOOF_SUSPECTED"  # the countermeasure flags synthetic / converted speech
    REPLAY_SUSPECTED = "REPLAY_SUSPECTED"  # the audio replays a recording already heard for this speaker


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


def decide(
    score: float, thresholds: Thresholds, net_speech_s: float, min_speech_s: float, low_quality: bool = False
) -> Outcome:
    """Decision for a scored probe.

    Too little speech makes any score unreliable in both directions, so it is INCONCLUSIVE even
    when the score alone would accept or reject; the score reason is still reported so that an
    analyst can see which way it leaned.
    """
    if score >= thresholds.accept:
        by_score, reason = Decision.ACCEPT, Reason.SCORE_ABOVE_ACCEPT_THRESHOLD
    elif score < thresholds.reject:
        by_score, reason = Decision.REJECT, Reason.SCORE_BELOW_REJECT_THRESHOLD
    else:
        by_score, reason = Decision.INCONCLUSIVE, Reason.SCORE_BETWEEN_THRESHOLDS
    if net_speech_s < min_speech_s:
        return Outcome(Decision.INCONCLUSIVE, (Reason.INSUFFICIENT_SPEECH, reason))
    # Poor audio was already met with the wider (stricter) threshold pair; the reason says so.
    return Outcome(by_score, (Reason.LOW_QUALITY_AUDIO, reason) if low_quality else (reason,))


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
