"""Lockout after repeated rejections (pure): state in, state out.

A run of REJECTs against one speaker is the signature of someone trying voices (or recordings)
until one passes; after `max_rejects` in a row the speaker is locked for `window_s` or until an
admin unlocks. ACCEPT ends the run; INCONCLUSIVE neither extends nor ends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from voiceid.verify.decision import Decision


@dataclass(frozen=True)
class LockState:
    consecutive_rejects: int = 0
    locked_at: datetime | None = None


def is_locked(state: LockState, now: datetime, window_s: float) -> bool:
    return state.locked_at is not None and now < state.locked_at + timedelta(seconds=window_s)


def current(state: LockState, now: datetime, window_s: float) -> LockState:
    """The state as of `now`: an expired lock is lifted and its rejects forgotten."""
    if state.locked_at is not None and not is_locked(state, now, window_s):
        return LockState()
    return state


def after_decision(state: LockState, decision: Decision, now: datetime, max_rejects: int, window_s: float) -> LockState:
    state = current(state, now, window_s)
    if decision is Decision.ACCEPT:
        return LockState()
    if decision is Decision.REJECT:
        rejects = state.consecutive_rejects + 1
        return LockState(rejects, now if rejects >= max_rejects and state.locked_at is None else state.locked_at)
    return state
