import numpy as np
import pytest

from voiceid.evaluation import metrics
from voiceid.verify.calibration import (
    Calibration,
    fit_calibration,
    fit_logistic,
    load_calibrations,
    merge_calibration,
    policy_thresholds,
    save_calibrations,
)


def test_logistic_fit_recovers_the_true_llr_of_two_gaussians() -> None:
    # Equal-variance Gaussians: LLR(s) = (m1 - m0)/v * s - (m1^2 - m0^2)/(2v), exactly affine.
    rng = np.random.default_rng(0)
    m0, m1, sd = 0.1, 0.3, 0.1
    tar, non = rng.normal(m1, sd, 20_000), rng.normal(m0, sd, 200_000)
    slope, offset = fit_logistic(tar, non)
    assert slope == pytest.approx((m1 - m0) / sd**2, rel=0.03)
    assert offset == pytest.approx(-(m1**2 - m0**2) / (2 * sd**2), rel=0.03)


def test_calibrated_llrs_beat_raw_scores_and_approach_min_cllr() -> None:
    rng = np.random.default_rng(1)
    tar, non = rng.normal(0.6, 0.1, 2000), rng.normal(0.1, 0.12, 20_000)
    slope, offset = fit_logistic(tar, non)
    cal = metrics.cllr(slope * tar + offset, slope * non + offset)
    assert cal < metrics.cllr(tar, non)
    assert cal == pytest.approx(metrics.min_cllr(tar, non), abs=0.02)


def test_fit_is_invariant_to_the_number_of_nontarget_trials() -> None:
    rng = np.random.default_rng(2)
    tar, non = rng.normal(1, 1, 5000), rng.normal(-1, 1, 50_000)
    a1, b1 = fit_logistic(tar, non)
    a2, b2 = fit_logistic(tar, non[:5000])
    assert a1 == pytest.approx(a2, rel=0.1) and b1 == pytest.approx(b2, abs=0.1)


def test_policy_thresholds_hit_their_targets() -> None:
    rng = np.random.default_rng(3)
    tar, non = rng.normal(3, 1, 10_000), rng.normal(0, 1, 100_000)
    accept, reject = policy_thresholds(tar, non, target_fmr=0.001, target_fnmr=0.01)
    assert np.mean(non >= accept) <= 0.001
    assert np.mean(non >= accept) > 0.0008  # the lowest such threshold, not an arbitrary high one
    assert np.mean(tar < reject) <= 0.01
    assert reject <= accept


def test_separated_populations_clamp_reject_to_accept() -> None:
    accept, reject = policy_thresholds(np.array([5.0, 6.0]), np.linspace(0, 1, 10_000), 0.001, 0.01)
    assert accept == pytest.approx(0.999, abs=1e-3)
    assert reject == accept


def test_calibration_round_trip_and_low_quality_band_is_wider(tmp_path) -> None:
    rng = np.random.default_rng(4)
    tar, non = rng.normal(3, 1, 5000), rng.normal(0, 1, 100_000)
    cal = fit_calibration(tar, non, channel="phone", norm="as-norm", model_version="m", fitted_on="synthetic")
    assert cal.low_quality_accept_threshold >= cal.accept_threshold
    assert cal.low_quality_reject_threshold <= cal.reject_threshold
    assert cal.llr(cal.accept_threshold) > 0
    save_calibrations([cal], tmp_path / "c.json")
    loaded = load_calibrations(tmp_path / "c.json")
    assert loaded == [cal]
    assert isinstance(loaded[0], Calibration)
    other_norm = fit_calibration(tar, non, channel="phone", norm="none", model_version="m", fitted_on="synthetic")
    refit = fit_calibration(tar + 0.1, non, channel="phone", norm="as-norm", model_version="m", fitted_on="again")
    merged = merge_calibration(merge_calibration(loaded, other_norm), refit)
    assert {(c.norm, c.fitted_on) for c in merged} == {("none", "synthetic"), ("as-norm", "again")}
