from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voiceid.verify.decision import Decision, Reason, Thresholds, decide
from voiceid.verify.lockout import Attempt, LockState, Weights, after_attempt, after_decision, current, is_locked

T = Thresholds(accept=0.5, reject=0.3)


@pytest.mark.parametrize(
    ("score", "speech", "decision", "reasons"),
    [
        (0.5, 5, Decision.ACCEPT, [Reason.SCORE_ABOVE_ACCEPT_THRESHOLD]),  # the threshold itself accepts
        (0.4999, 5, Decision.INCONCLUSIVE, [Reason.SCORE_BETWEEN_THRESHOLDS]),
        (0.3, 5, Decision.INCONCLUSIVE, [Reason.SCORE_BETWEEN_THRESHOLDS]),
        (0.2999, 5, Decision.REJECT, [Reason.SCORE_BELOW_REJECT_THRESHOLD]),
        (0.9, 2.9, Decision.INCONCLUSIVE, [Reason.INSUFFICIENT_SPEECH, Reason.SCORE_ABOVE_ACCEPT_THRESHOLD]),
        (-0.5, 2.9, Decision.INCONCLUSIVE, [Reason.INSUFFICIENT_SPEECH, Reason.SCORE_BELOW_REJECT_THRESHOLD]),
    ],
)
def test_decide(score, speech, decision, reasons):
    out = decide(score, T, speech, min_speech_s=3.0)
    assert out.decision is decision and list(out.reasons) == reasons


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        Thresholds(accept=0.3, reject=0.5)


NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_lockout_run():
    s = LockState()
    for _ in range(4):
        s = after_decision(s, Decision.REJECT, NOW, 5, window_s=60)
    assert s == LockState(4, None)
    assert after_decision(s, Decision.ACCEPT, NOW, 5, 60) == LockState()
    locked = after_decision(s, Decision.REJECT, NOW, 5, 60)
    assert locked == LockState(5, NOW) and is_locked(locked, NOW + timedelta(seconds=59), 60)
    assert not is_locked(locked, NOW + timedelta(seconds=60), 60)
    assert current(locked, NOW + timedelta(seconds=60), 60) == LockState()
    # Further failures while locked do not move the start of the lock.
    assert after_decision(locked, Decision.REJECT, NOW + timedelta(seconds=10), 5, 60).locked_at == NOW


def test_inconclusive_and_unusable_attempts_are_not_free_retries():
    weights = Weights(inconclusive=0.5, unusable=0.25)
    s = LockState()
    for _ in range(9):
        s = after_decision(s, Decision.INCONCLUSIVE, NOW, 5, 60, weights)
    assert s.weight == 4.5 and s.locked_at is None
    s = after_attempt(s, Attempt.UNUSABLE, NOW, 5, 60, weights)
    assert s.weight == 4.75 and s.locked_at is None
    s = after_decision(s, Decision.INCONCLUSIVE, NOW, 5, 60, weights)
    assert s.locked_at == NOW  # ten INCONCLUSIVEs and a short clip lock like five REJECTs
    # Outcomes that are not the caller's doing count nothing.
    assert after_decision(LockState(2), Decision.NOT_ENROLLED, NOW, 5, 60) == LockState(2)
    # With zero weights INCONCLUSIVE is neutral again (an operator's explicit choice).
    assert after_decision(LockState(2), Decision.INCONCLUSIVE, NOW, 5, 60, Weights(0, 0)) == LockState(2)
