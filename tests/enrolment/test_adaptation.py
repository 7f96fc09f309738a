"""The adaptation rule (voiceid/enrolment/adaptation.py): bounds, guards and the poisoning guard."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from voiceid.enrolment.adaptation import (
    AdaptationLimits,
    CallFacts,
    Refusal,
    adapted_voiceprint,
    drift_bound,
    kept_calls,
    refusal_of,
    share_of,
)
from voiceid.statuses import CmCheck
from voiceid.verify.decision import Decision
from voiceid.verify.vectors import build_voiceprint, cosine, l2_normalise

DIM = 192
LIMITS = AdaptationLimits(max_share=0.3, call_share=0.1, max_calls=5, min_cosine=0.5, llr_margin=2.0, min_speech_s=4.0)
GOOD = CallFacts(
    decision=Decision.ACCEPT,
    llr=9.0,
    accept_threshold=5.0,
    cm_check=CmCheck.PASSED,
    replay_suspected=False,
    watchlist_hit=False,
    linked=False,
    challenge_failed=False,
    net_speech_s=8.0,
)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return l2_normalise(v)


def near(anchor: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at exactly cosine `cos` from `anchor`."""
    other = unit(seed)
    other = l2_normalise(other - float(other @ anchor) * anchor)
    return l2_normalise(cos * anchor + np.sqrt(1 - cos**2) * other)


def test_a_call_that_passed_everything_adapts() -> None:
    assert refusal_of(GOOD, 0.8, LIMITS) is None


@pytest.mark.parametrize(
    ("change", "cos", "refusal"),
    [
        ({"decision": Decision.INCONCLUSIVE}, 0.8, Refusal.NOT_ACCEPTED),
        ({"llr": None}, 0.8, Refusal.NOT_CALIBRATED),
        ({"accept_threshold": None}, 0.8, Refusal.NOT_CALIBRATED),
        ({"llr": 6.9}, 0.8, Refusal.LOW_CONFIDENCE),  # ACCEPT, but within the margin
        ({"cm_check": CmCheck.SKIPPED}, 0.8, Refusal.COUNTERMEASURE_NOT_PASSED),
        ({"cm_check": CmCheck.FLAGGED}, 0.8, Refusal.COUNTERMEASURE_NOT_PASSED),
        ({"cm_check": None}, 0.8, Refusal.COUNTERMEASURE_NOT_PASSED),  # CM off: no adaptation
        ({"replay_suspected": True}, 0.8, Refusal.REPLAY),
        ({"watchlist_hit": True}, 0.8, Refusal.WATCHLIST),
        ({"linked": True}, 0.8, Refusal.LINKED_VOICE),
        ({"challenge_failed": True}, 0.8, Refusal.CHALLENGE),
        ({"net_speech_s": 3.9}, 0.8, Refusal.TOO_LITTLE_SPEECH),
        ({"same_channel": False}, 0.8, Refusal.CROSS_CHANNEL),
        ({}, 0.49, Refusal.FAR_FROM_ENROLMENT),
    ],
)
def test_every_guard_refuses(change: dict[str, object], cos: float, refusal: Refusal) -> None:
    assert refusal_of(replace(GOOD, **change), cos, LIMITS) is refusal  # type: ignore[arg-type]


def test_the_margin_is_inclusive() -> None:
    assert refusal_of(replace(GOOD, llr=7.0), 0.5, LIMITS) is None


def test_no_calls_leave_the_enrolment_voiceprint() -> None:
    e = unit(1)
    np.testing.assert_allclose(adapted_voiceprint(e, [], LIMITS), e, atol=1e-6)


def test_the_weight_grows_per_call_up_to_the_cap() -> None:
    e = unit(1)
    calls = [near(e, 0.7, 10 + i) for i in range(5)]
    assert [share_of(n, LIMITS) for n in range(5)] == pytest.approx([0, 0.1, 0.2, 0.3, 0.3])
    for n in range(1, 6):
        got = adapted_voiceprint(e, calls[:n], LIMITS)
        s = min(0.3, 0.1 * n)
        pulled = build_voiceprint(np.stack(calls[:n]))
        np.testing.assert_allclose(got, l2_normalise((1 - s) * e + s * pulled), atol=1e-5)


def test_the_count_cap_drops_the_oldest_first() -> None:
    e = unit(1)
    calls = [near(e, 0.7, 20 + i) for i in range(8)]
    assert kept_calls(e, calls, LIMITS) == [3, 4, 5, 6, 7]
    np.testing.assert_allclose(
        adapted_voiceprint(e, calls, LIMITS), adapted_voiceprint(e, calls[3:], LIMITS), atol=1e-6
    )


def test_calls_below_the_floor_are_left_out_even_when_stored() -> None:
    e = unit(1)
    good, far = near(e, 0.7, 30), near(e, 0.3, 31)
    assert kept_calls(e, [far, good], LIMITS) == [1]
    np.testing.assert_allclose(adapted_voiceprint(e, [far, good], LIMITS), adapted_voiceprint(e, [good], LIMITS))


def test_adaptation_moves_the_voiceprint_towards_the_caller() -> None:
    e = unit(1)
    line = near(e, 0.6, 40)  # how the caller sounds on their line: the calls cluster around it
    calls = [l2_normalise(line + 0.3 * unit(50 + i)) for i in range(5)]
    assert all(cosine(c, e) >= LIMITS.min_cosine for c in calls)
    adapted = adapted_voiceprint(e, calls, LIMITS)
    later = l2_normalise(line + 0.3 * unit(99))
    assert cosine(later, adapted) > cosine(later, e) + 0.05


@pytest.mark.parametrize("floor", [0.0, 0.3, 0.5, 0.8])
def test_an_attacker_cannot_walk_the_voiceprint(floor: float) -> None:
    """Adversarial accepted calls, each as far towards the attacker as the floor lets through, in a long
    sequence: however many, the voiceprint stays within the drift bound of the enrolment voiceprint, and
    the attacker's similarity to it stops growing once the cap is reached."""
    limits = replace(LIMITS, min_cosine=floor)
    e = unit(1)
    attacker = near(e, 0.1, 2)  # an attacker who got in once, not a look-alike
    calls: list[np.ndarray] = []
    similarity = []
    for step in range(50):
        # the best the attacker can do: a call on the segment towards their voice that just passes the floor
        for t in np.linspace(1, 0, 101):
            candidate = l2_normalise(t * attacker + (1 - t) * e)
            if cosine(candidate, e) >= floor:
                break
        assert refusal_of(GOOD, cosine(candidate, e), limits) is None
        calls.append(candidate + 1e-4 * unit(100 + step))
        adapted = adapted_voiceprint(e, calls, limits)
        assert cosine(adapted, e) >= drift_bound(limits) - 1e-5
        similarity.append(cosine(adapted, attacker))
    bound = drift_bound(limits)
    assert bound == pytest.approx(1 - 0.3 * (1 - floor))
    # saturated: from the cap on, more calls gain the attacker nothing
    assert max(similarity[5:]) - similarity[4] < 1e-3
    # and never beyond the voiceprint rotated by the bound's angle straight at the attacker
    assert max(similarity) <= np.cos(max(0.0, np.arccos(cosine(e, attacker)) - np.arccos(bound))) + 1e-5
    assert similarity[-1] > cosine(e, attacker)  # the calls did pull: the bound is what held them


def test_calls_far_from_the_enrolment_never_adapt_even_if_the_adapted_voiceprint_moved() -> None:
    """The floor is held against the enrolment voiceprint, not the adapted one: a chain of calls each
    close to the previous adapted voiceprint cannot lead away from the enrolment."""
    e = unit(1)
    adapted = e
    calls: list[np.ndarray] = []
    target = near(e, 0.0, 3)
    for _ in range(30):
        step = l2_normalise(adapted + 0.8 * (target - adapted))  # close to the adapted voiceprint
        if refusal_of(GOOD, cosine(step, e), LIMITS) is None:
            calls.append(step)
        adapted = adapted_voiceprint(e, calls, LIMITS)
    assert cosine(adapted, e) >= drift_bound(LIMITS) - 1e-5
    assert all(cosine(c, e) >= LIMITS.min_cosine for c in calls)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        replace(LIMITS, max_share=1.0)
    with pytest.raises(ValueError):
        replace(LIMITS, max_calls=0)
