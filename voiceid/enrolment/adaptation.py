"""Voiceprints that follow the caller: adaptation with high-confidence accepted calls (pure).

A voiceprint enrolled on one line and verified over another (a mobile app, then G.711) meets calls it
never resembles. The calls themselves are the best evidence of how the caller sounds on their line,
so an accepted call that passed every check can join the voiceprint of its channel:

    adapted = normalise((1 - s) * enrolment + s * normalise(mean(kept calls)))
    s       = min(max_share, n_kept * call_share)

- **Bounded weight.** The kept calls together never weigh more than `max_share` of the voiceprint,
  and at most `max_calls` are kept per channel (the oldest dropped first).
- **Anchored.** Every call is compared with the *enrolment* voiceprint of its channel, never with an
  adapted one; a call less similar than `min_cosine` never adapts. So the drift is bounded by
  construction: cos(adapted, enrolment) >= 1 - max_share * (1 - min_cosine) (`drift_bound`), however
  many calls an attacker who once got in makes: they cannot walk the voiceprint towards their voice.
- **Only high-confidence calls** (`refusal_of`): final outcome ACCEPT, LLR at least `llr_margin` above
  the accept threshold, the countermeasure run and PASSED (not skipped, not flagged), no replay, no
  watchlist hit, no linked-voice alert, the challenge (if any) passed, enough net speech.
- **Per channel.** A phone call adapts the voiceprint phone calls are scored against, a wideband call
  the wideband one, and only where that voiceprint is of the call's own channel (a phone view, or a
  phone enrolment, for phone calls); the enrolment voiceprint itself is never changed, so removing a call (an analyst's
  reversion, retention) rebuilds exactly the voiceprint without it (`adapted_voiceprint`).

Adaptation runs after the decision is taken and logged: it never changes the decision of the call
that triggers it (services/verification.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from voiceid.statuses import CmCheck
from voiceid.verify.decision import Decision
from voiceid.verify.vectors import build_voiceprint, cosine, l2_normalise

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdaptationLimits:
    max_share: float  # the kept calls' total weight in the adapted voiceprint, in [0, 1)
    call_share: float  # each call's weight until the cap is reached
    max_calls: int  # kept per channel; the oldest is dropped first
    min_cosine: float  # a call less similar than this to the enrolment voiceprint never adapts
    llr_margin: float  # nats above the accept threshold a call's LLR must reach
    min_speech_s: float  # net speech a call must have

    def __post_init__(self) -> None:
        if not 0 <= self.max_share < 1 or self.call_share <= 0 or self.max_calls < 1 or not -1 <= self.min_cosine <= 1:
            raise ValueError(f"invalid adaptation limits: {self}")


class Refusal(StrEnum):
    """Why a call does not adapt the voiceprint (None from `refusal_of`: it does)."""

    DISABLED = "DISABLED"  # VOICEID_ADAPTATION is off
    NO_VOICEPRINT = "NO_VOICEPRINT"  # no enrolment voiceprint of the call's model to hold it to
    # The voiceprint the call meets is of another channel (a G.711 call against a wideband voiceprint with
    # the phone view off, a wideband call against a phone enrolment): adapted towards the call's channel it
    # would leave its cohort's, and its scores run high (bench/adaptation.py: impostor ACCEPT doubled).
    CROSS_CHANNEL = "CROSS_CHANNEL"
    NOT_ACCEPTED = "NOT_ACCEPTED"
    NOT_CALIBRATED = "NOT_CALIBRATED"  # no LLR: the margin cannot be checked
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    COUNTERMEASURE_NOT_PASSED = "COUNTERMEASURE_NOT_PASSED"
    REPLAY = "REPLAY"
    WATCHLIST = "WATCHLIST"
    LINKED_VOICE = "LINKED_VOICE"
    CHALLENGE = "CHALLENGE"
    TOO_LITTLE_SPEECH = "TOO_LITTLE_SPEECH"
    FAR_FROM_ENROLMENT = "FAR_FROM_ENROLMENT"


@dataclass(frozen=True)
class CallFacts:
    """What the adaptation guards read of one decided call."""

    decision: Decision
    llr: float | None
    accept_threshold: float | None  # on the LLR scale
    cm_check: CmCheck | None
    replay_suspected: bool
    watchlist_hit: bool
    linked: bool
    challenge_failed: bool  # a challenge was sent and not passed (False: passed, or none sent)
    net_speech_s: float
    same_channel: bool = True  # the voiceprint the call was scored against is of the call's channel


def refusal_of(facts: CallFacts, cosine_to_enrolment: float, limits: AdaptationLimits) -> Refusal | None:
    """The first guard a call fails, or None when it may adapt the voiceprint. `cosine_to_enrolment`:
    the call's raw cosine to the enrolment voiceprint of its channel (not to an adapted one)."""
    if facts.decision is not Decision.ACCEPT:
        return Refusal.NOT_ACCEPTED
    if facts.llr is None or facts.accept_threshold is None:
        return Refusal.NOT_CALIBRATED
    if facts.llr < facts.accept_threshold + limits.llr_margin:
        return Refusal.LOW_CONFIDENCE
    if facts.cm_check is not CmCheck.PASSED:
        return Refusal.COUNTERMEASURE_NOT_PASSED
    if facts.replay_suspected:
        return Refusal.REPLAY
    if facts.watchlist_hit:
        return Refusal.WATCHLIST
    if facts.linked:
        return Refusal.LINKED_VOICE
    if facts.challenge_failed:
        return Refusal.CHALLENGE
    if facts.net_speech_s < limits.min_speech_s:
        return Refusal.TOO_LITTLE_SPEECH
    if not facts.same_channel:
        return Refusal.CROSS_CHANNEL
    if cosine_to_enrolment < limits.min_cosine:
        return Refusal.FAR_FROM_ENROLMENT
    return None


def kept_calls(
    enrolment: npt.NDArray[np.floating], calls: Sequence[npt.NDArray[np.floating]], limits: AdaptationLimits
) -> list[int]:
    """Indices (into `calls`, oldest first) of the calls the adapted voiceprint is built from: those at
    least `min_cosine` from the enrolment voiceprint, the newest `max_calls` of them. The floor is
    checked again here, so a row stored under other limits can never pull harder than these allow."""
    close = [i for i, call in enumerate(calls) if cosine(call, enrolment) >= limits.min_cosine]
    return close[-limits.max_calls :]


def share_of(n_calls: int, limits: AdaptationLimits) -> float:
    return min(limits.max_share, n_calls * limits.call_share)


def adapted_voiceprint(
    enrolment: npt.NDArray[np.floating], calls: Sequence[npt.NDArray[np.floating]], limits: AdaptationLimits
) -> FloatArray:
    """The voiceprint of one channel after adaptation with `calls` (oldest first); the enrolment
    voiceprint itself when none is kept."""
    anchor = l2_normalise(enrolment)
    kept = kept_calls(anchor, calls, limits)
    share = share_of(len(kept), limits)
    if not kept or share <= 0:
        return anchor
    pulled = build_voiceprint(np.stack([calls[i] for i in kept]))
    return build_voiceprint(np.stack([anchor, pulled]), np.array([1.0 - share, share], dtype=np.float32))


def drift_bound(limits: AdaptationLimits) -> float:
    """The least cosine an adapted voiceprint can have to its enrolment voiceprint (min_cosine >= 0).

    Every kept call c has c.e >= f (f = min_cosine), so their mean m has m.e >= f and |m| <= 1, hence
    u = m / |m| has u.e >= f. The adapted v = (1 - s) e + s u has v.e >= 1 - s (1 - f) and |v| <= 1."""
    floor = limits.min_cosine if limits.min_cosine >= 0 else -1.0  # below 0 the mean bounds nothing
    return 1.0 - limits.max_share * (1.0 - floor)
