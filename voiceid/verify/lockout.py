"""Lockout after repeated failed attempts (pure): state in, state out.

A run of failed attempts against one speaker is the signature of someone trying voices (or
recordings) until one passes. Every failed attempt adds its weight: a REJECT counts 1, and so that
retries are never free, an INCONCLUSIVE or an attempt whose audio was unusable (too short, no
speech) counts a configurable fraction. When the weight reaches `max_weight` the speaker is locked
for `window_s` or until an admin unlocks. ACCEPT ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from voiceid.verify.decision import Decision


class Attempt(StrEnum):
    """What an attempt amounted to, as far as lockout is concerned."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    INCONCLUSIVE = "INCONCLUSIVE"
    UNUSABLE = "UNUSABLE"  # refused before scoring: too little or no speech
    NEUTRAL = "NEUTRAL"  # not the caller's doing (not enrolled, opted out, already locked)
    CHALLENGE_FAILED = "CHALLENGE_FAILED"  # a spoken challenge not passed (wrong words, expired, used, unknown)


@dataclass(frozen=True)
class Weights:
    inconclusive: float = 0.5
    unusable: float = 0.5
    challenge_failed: float = 1.0  # like a REJECT by default: a wrong prompt is what a replay sounds like


@dataclass(frozen=True)
class LockState:
    weight: float = 0.0
    locked_at: datetime | None = None


def attempt_of(decision: Decision) -> Attempt:
    return {
        Decision.ACCEPT: Attempt.ACCEPTED,
        Decision.REJECT: Attempt.REJECTED,
        Decision.INCONCLUSIVE: Attempt.INCONCLUSIVE,
    }.get(decision, Attempt.NEUTRAL)


def is_locked(state: LockState, now: datetime, window_s: float) -> bool:
    return state.locked_at is not None and now < state.locked_at + timedelta(seconds=window_s)


def current(state: LockState, now: datetime, window_s: float) -> LockState:
    """The state as of `now`: an expired lock is lifted and its failures forgotten."""
    if state.locked_at is not None and not is_locked(state, now, window_s):
        return LockState()
    return state


def after_attempt(
    state: LockState, attempt: Attempt, now: datetime, max_weight: float, window_s: float, weights: Weights
) -> LockState:
    state = current(state, now, window_s)
    if attempt is Attempt.ACCEPTED:
        return LockState()
    add = {
        Attempt.REJECTED: 1.0,
        Attempt.INCONCLUSIVE: weights.inconclusive,
        Attempt.UNUSABLE: weights.unusable,
        Attempt.CHALLENGE_FAILED: weights.challenge_failed,
    }.get(attempt, 0.0)
    if add == 0.0:
        return state
    # Rounded so that e.g. ten halves make exactly five, not 4.999999.
    weight = round(state.weight + add, 6)
    locks = weight >= max_weight and state.locked_at is None
    return LockState(weight, now if locks else state.locked_at)


def after_decision(
    state: LockState,
    decision: Decision,
    now: datetime,
    max_weight: float,
    window_s: float,
    weights: Weights | None = None,
) -> LockState:
    return after_attempt(state, attempt_of(decision), now, max_weight, window_s, weights or Weights())
