"""The decision composed in one place (voiceid/services/decision.py): every step, in its order."""

from __future__ import annotations

import pytest

from voiceid.antispoof.policy import PadAction
from voiceid.challenge.policy import ChallengeCheck, ChallengePolicy, ChallengeStatus
from voiceid.services.decision import ChallengeEvidence, Evidence, Step, VoiceEvidence, compose
from voiceid.verify.decision import Decision, Reason, Thresholds

PAIR = Thresholds(accept=3.0, reject=0.0)


def voice(value: float, speech: float = 5.0) -> VoiceEvidence:
    return VoiceEvidence(value, PAIR, speech, 1.0)


def no_challenge(policy: ChallengePolicy = ChallengePolicy.OFF, risky: bool = False) -> ChallengeEvidence:
    return ChallengeEvidence(None, policy, risky)


def passed() -> ChallengeEvidence:
    return ChallengeEvidence(ChallengeCheck("a" * 32, ChallengeStatus.PASSED, "123456"), ChallengePolicy.ON_RISK, False)


def test_a_clean_accept_goes_through_every_step_in_order() -> None:
    composed = compose(Evidence(voice(5.0), challenge=no_challenge(), linked=False))
    assert composed.outcome.decision is Decision.ACCEPT
    assert composed.outcome.reasons == (Reason.SCORE_ABOVE_ACCEPT_THRESHOLD,)
    assert [step for step, _ in composed.trail] == [
        Step.POLICY,
        Step.WATCHLIST,
        Step.COUNTERMEASURE,
        Step.REPLAY,
        Step.CHALLENGE,
        Step.LINKS,
    ]


def test_an_interim_stops_after_replay() -> None:
    """A stream's interim has no challenge settled and no links checked yet."""
    composed = compose(Evidence(voice(5.0)))
    assert [step for step, _ in composed.trail][-1] is Step.REPLAY
    assert composed.after(Step.CHALLENGE) is None


@pytest.mark.parametrize("action", list(PadAction))
def test_a_flagged_call_is_never_accept_even_with_a_passed_challenge(action: PadAction) -> None:
    for flags in ({"spoof_suspected": True}, {"replay_suspected": True}):
        composed = compose(Evidence(voice(9.0), pad_action=action, challenge=passed(), linked=False, **flags))
        assert composed.outcome.decision is not Decision.ACCEPT
        assert Reason.CHALLENGE_PASSED in composed.outcome.reasons


def test_the_watchlist_forces_reject_before_the_later_steps_run() -> None:
    composed = compose(
        Evidence(voice(9.0), watchlist_hit=True, watchlist_forces_reject=True, challenge=passed(), linked=True)
    )
    assert composed.after(Step.POLICY) is not None and composed.after(Step.POLICY).decision is Decision.ACCEPT
    assert composed.outcome.decision is Decision.REJECT
    assert composed.outcome.reasons == (
        Reason.SCORE_ABOVE_ACCEPT_THRESHOLD,
        Reason.WATCHLIST_MATCH,
        Reason.CHALLENGE_PASSED,
        Reason.LINKED_VOICE,
    )


def test_a_risky_call_without_a_challenge_is_asked_for_one_and_links_do_not_change_the_decision() -> None:
    composed = compose(Evidence(voice(9.0), challenge=no_challenge(ChallengePolicy.ON_RISK, True), linked=True))
    assert composed.outcome.decision is Decision.INCONCLUSIVE
    assert composed.outcome.reasons[-2:] == (Reason.CHALLENGE_REQUIRED, Reason.LINKED_VOICE)
    assert composed.after(Step.LINKS) == composed.outcome


def test_wrong_words_reject_and_an_abandoned_stream_is_never_accept() -> None:
    mismatch = ChallengeEvidence(
        ChallengeCheck("b" * 32, ChallengeStatus.MISMATCH, "123456"), ChallengePolicy.ON_RISK, False
    )
    assert compose(Evidence(voice(9.0), challenge=mismatch, linked=False)).outcome.decision is Decision.REJECT
    abandoned = compose(Evidence(voice(9.0), challenge=no_challenge(), linked=False, abandoned=True))
    assert abandoned.outcome.decision is Decision.INCONCLUSIVE
    assert abandoned.outcome.reasons[-1] is Reason.STREAM_ABANDONED


def test_too_little_speech_is_inconclusive_whatever_the_score() -> None:
    composed = compose(Evidence(voice(9.0, speech=0.5), challenge=no_challenge(), linked=False))
    assert composed.outcome.decision is Decision.INCONCLUSIVE
    assert composed.outcome.reasons[0] is Reason.INSUFFICIENT_SPEECH
