"""The self-calibration on synthetic populations (verify/selfcal.py): the FMR target holds on a population
whose impostors score higher than the calibration's did, and no flood of enrolments can lower the accept
threshold below its floor."""

from __future__ import annotations

import numpy as np
import pytest

from voiceid.verify.calibration import fit_calibration
from voiceid.verify.policy import policy_from_calibrations
from voiceid.verify.selfcal import (
    SelfCalibration,
    SelfCalLimits,
    ShiftMethod,
    cap_per_owner,
    fit_channel_shift,
)

FMR = 0.001


@pytest.fixture(scope="module")
def shipped():
    """A calibration fitted on a 'dev' population: non-target scores N(0, 1), targets N(4, 1)."""
    rng = np.random.default_rng(0)
    n_tar, n_non = 4000, 200_000
    probe_tar, probe_non = rng.uniform(1.5, 8, n_tar), rng.uniform(1.5, 8, n_non)
    cal = fit_calibration(
        rng.normal(4.0, 1.0, n_tar),
        rng.normal(0.0, 1.0, n_non),
        target_probe_s=probe_tar,
        nontarget_probe_s=probe_non,
        channel="phone",
        norm="none",
        model_version="m",
        fitted_on="synthetic",
    )
    accept = policy_from_calibrations({"phone": cal}, FMR, 0.01)["phone"].accept
    return cal, accept


def population(rng, speakers: int, probes: int, mean: float, sd: float = 1.0):
    """Non-target trials of a population: every speaker's probes against every other speaker, with a
    per-pair offset (pairs of people are not independent) around `mean`."""
    owner, claimed, scores = [], [], []
    pair_offset = rng.normal(0, 0.3, (speakers, speakers))
    for b in range(speakers):
        for a in range(speakers):
            if a == b:
                continue
            owner += [b] * probes
            claimed += [a] * probes
            scores.append(rng.normal(mean + pair_offset[b, a], sd, probes))
    speech = rng.uniform(1.5, 8, len(owner))
    return np.concatenate(scores), speech, np.array(owner), np.array(claimed)


def fmr(cal, shift, scores, speech, accept) -> float:
    llr = cal.llrs(scores, speech) - (shift.shifts_for(speech) if shift is not None else 0.0)
    return float(np.mean(llr >= accept))


def test_fmr_target_holds_on_a_population_whose_impostors_score_higher(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(1)
    fit_scores, fit_speech, owner, claimed = population(rng, 200, 2, mean=1.0)
    shift = fit_channel_shift(
        cal.llrs(fit_scores, fit_speech), fit_speech, owner, claimed, cal, accept, FMR, SelfCalLimits()
    )
    assert all(b.method is ShiftMethod.TAIL for b in shift.bands[:2])
    # Fresh trials of the same population: the shipped calibration misses the target by far.
    test_scores, test_speech, _, _ = population(rng, 200, 2, mean=1.0)
    assert fmr(cal, None, test_scores, test_speech, accept) > 5 * FMR
    assert fmr(cal, shift, test_scores, test_speech, accept) <= 2 * FMR


def test_a_small_shifted_population_raises_the_threshold_from_its_mean(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(2)
    fit_scores, fit_speech, owner, claimed = population(rng, 30, 3, mean=1.0)
    shift = fit_channel_shift(
        cal.llrs(fit_scores, fit_speech), fit_speech, owner, claimed, cal, accept, FMR, SelfCalLimits()
    )
    assert {b.method for b in shift.bands if b.n_trials} == {ShiftMethod.MOMENTS}
    assert all(b.shift > 0 for b in shift.bands)
    test_scores, test_speech, _, _ = population(rng, 30, 3, mean=1.0)
    assert fmr(cal, shift, test_scores, test_speech, accept) < fmr(cal, None, test_scores, test_speech, accept)


def test_the_population_the_calibration_was_fitted_on_is_left_alone(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(3)
    scores, speech, owner, claimed = population(rng, 40, 3, mean=0.0)
    shift = fit_channel_shift(cal.llrs(scores, speech), speech, owner, claimed, cal, accept, FMR, SelfCalLimits())
    assert all(abs(b.shift) < 0.3 for b in shift.bands)


def test_a_flood_of_dissimilar_enrolments_cannot_lower_the_threshold_below_its_floor(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(4)
    limits = SelfCalLimits(max_lower=0.5)
    # An attacker enrols 300 identities whose voices score far below everyone: the population's
    # impostor tail is diluted, which would pull the threshold down without the floor.
    scores, speech, owner, claimed = population(rng, 300, 1, mean=-3.0)
    shift = fit_channel_shift(cal.llrs(scores, speech), speech, owner, claimed, cal, accept, FMR, limits)
    assert any(b.estimate < -limits.max_lower for b in shift.bands)
    assert all(b.shift >= -limits.max_lower for b in shift.bands)
    # Too few identities: no lowering at all, whatever the trials say.
    few = fit_channel_shift(
        cal.llrs(scores, speech), speech, owner, claimed, cal, accept, FMR, SelfCalLimits(min_speakers_to_lower=1000)
    )
    assert all(b.shift >= 0 for b in few.bands)


def test_look_alike_enrolments_only_ever_raise_the_threshold_and_within_bounds(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(5)
    limits = SelfCalLimits(max_raise=2.0)
    scores, speech, owner, claimed = population(rng, 60, 3, mean=3.5)  # voices alike: impostors score high
    shift = fit_channel_shift(cal.llrs(scores, speech), speech, owner, claimed, cal, accept, FMR, limits)
    assert all(0 < b.shift <= limits.max_raise for b in shift.bands)


def test_a_fit_round_trips_and_its_version_is_its_content(shipped) -> None:
    cal, accept = shipped
    rng = np.random.default_rng(6)
    scores, speech, owner, claimed = population(rng, 30, 2, mean=0.8)
    shift = fit_channel_shift(cal.llrs(scores, speech), speech, owner, claimed, cal, accept, FMR, SelfCalLimits())
    fit = SelfCalibration([shift], FMR, 30)
    again = SelfCalibration.from_dict(fit.to_dict())
    assert again == fit and again.version == fit.version
    assert fit.for_calibration(cal.calibration_id) == shift
    assert fit.for_calibration("phone/as-norm/other") is None  # a fit applies only to its own regime
    other = SelfCalibration([shift], FMR, 31)
    assert other.version != fit.version


def test_each_identity_contributes_at_most_its_share_and_the_choice_is_stable() -> None:
    owners = ["a"] * 10 + ["b"] * 2 + ["c"] * 5
    keep = cap_per_owner(owners, 3, seed="m")
    picked = [owners[i] for i in keep]
    assert picked.count("a") == 3 and picked.count("b") == 2 and picked.count("c") == 3
    assert list(keep) == list(cap_per_owner(owners, 3, seed="m"))
