import numpy as np
import pytest

from voiceid.verify import metrics
from voiceid.verify.calibration import (
    BAND_EDGES,
    Calibration,
    band_labels,
    band_of,
    fit_calibration,
    fit_logistic,
    load_calibrations,
    merge_calibration,
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


def _duration_dependent_trials(rng, n_tar=6000, n_non=120_000):
    """Synthetic trials whose separation grows with the probe's net speech, as real ones do:
    target mean d * sqrt(speech / 6 s), both classes unit variance, so the true LLR is known."""
    probe_tar = rng.uniform(1.0, 16.0, n_tar)
    probe_non = rng.uniform(1.0, 16.0, n_non)
    sep_tar, sep_non = 2.5 * np.sqrt(probe_tar / 6), 2.5 * np.sqrt(probe_non / 6)
    tar = rng.normal(sep_tar, 1.0)
    non = rng.normal(0.0, 1.0, n_non)
    return tar, non, probe_tar, probe_non, sep_non


def _fit(tar, non, probe_tar, probe_non):
    return fit_calibration(
        tar,
        non,
        target_probe_s=probe_tar,
        nontarget_probe_s=probe_non,
        channel="phone",
        norm="as-norm",
        model_version="m",
        fitted_on="synthetic",
    )


def test_quality_aware_calibration_beats_score_only_and_has_no_cliff() -> None:
    rng = np.random.default_rng(3)
    tar, non, probe_tar, probe_non, _ = _duration_dependent_trials(rng)
    cal = _fit(tar, non, probe_tar, probe_non)
    llr_t, llr_n = cal.llrs(tar, probe_tar), cal.llrs(non, probe_non)
    slope, offset = fit_logistic(tar, non)
    score_only = metrics.cllr(slope * tar + offset, slope * non + offset)
    assert metrics.cllr(llr_t, llr_n) < score_only - 0.01
    # The same score is stronger evidence from a longer probe (the slope grows with speech) ...
    assert cal.llr(4.0, 12.0) > cal.llr(4.0, 3.0)
    # ... and the LLR changes smoothly with duration: no cliff anywhere between 1 and 16 s.
    grid = np.linspace(1.0, 16.0, 301)
    steps = np.abs(np.diff(cal.llrs(np.full_like(grid, 3.0), grid)))
    assert steps.max() < 0.2
    # Cllr is reported overall and per band.
    assert cal.cllr is not None and all(b.cllr is not None for b in cal.bands)


def test_llr_is_bounded_by_what_the_trials_can_support() -> None:
    rng = np.random.default_rng(4)
    tar, non, probe_tar, probe_non, _ = _duration_dependent_trials(rng, 2000, 20_000)
    cal = _fit(tar, non, probe_tar, probe_non)
    assert cal.llr(1e6, 10.0) == pytest.approx(np.log(20_000))
    assert cal.llr(-1e6, 10.0) == pytest.approx(-np.log(2000))


def test_policy_thresholds_hold_the_fmr_in_every_band() -> None:
    """A synthetic score set where the FMR per band is known: the accept threshold must keep every
    band at or under the target (on fresh trials from the same distributions too), not only the pool."""
    rng = np.random.default_rng(5)
    tar, non, probe_tar, probe_non, _ = _duration_dependent_trials(rng)
    cal = _fit(tar, non, probe_tar, probe_non)
    accept, reject = cal.thresholds(0.001, 0.01)
    assert reject <= accept
    llr_n = cal.llrs(non, probe_non)
    bands = band_of(probe_non)
    for k in range(len(BAND_EDGES) + 1):
        assert np.mean(llr_n[bands == k] >= accept) <= 0.001
    # The strictest band sets the threshold: it sits at its target, not above it.
    rates = [np.mean(llr_n[bands == k] >= accept) for k in range(len(BAND_EDGES) + 1)]
    assert max(rates) > 0.0005
    llr_t = cal.llrs(tar, probe_tar)
    assert all(np.mean(llr_t[band_of(probe_tar) == k] < reject) <= 0.01 for k in range(len(BAND_EDGES) + 1))
    # Fresh trials: the per-band FMR stays near the target (sampling noise only).
    _, non2, _, probe_non2, _ = _duration_dependent_trials(np.random.default_rng(6))
    fresh = cal.llrs(non2, probe_non2)
    assert all(np.mean(fresh[band_of(probe_non2) == k] >= accept) < 0.0025 for k in range(len(BAND_EDGES) + 1))


def test_a_band_without_enough_trials_does_not_set_the_threshold() -> None:
    rng = np.random.default_rng(7)
    tar, non, probe_tar, probe_non, _ = _duration_dependent_trials(rng, 3000, 60_000)
    probe_non = np.where(probe_non < 3.0, 4.0, probe_non)  # no non-target in the < 3 s band
    cal = _fit(tar, non, probe_tar, probe_non)
    assert cal.bands[0].n_nontarget == 0 and cal.bands[0].accept_threshold(0.001) is None
    accept, _ = cal.thresholds(0.001, 0.01)
    assert np.isfinite(accept)
    with pytest.raises(ValueError):
        cal.thresholds(1e-7, 0.01)  # no band can show a false-match rate that small


def test_band_labels_and_edges() -> None:
    assert band_labels() == ["<3s", "3-6s", "6-10s", ">=10s"]
    assert band_of([0.5, 3.0, 5.99, 6.0, 10.0, 30.0]).tolist() == [0, 1, 1, 2, 3, 3]


def test_calibration_round_trip_and_merge(tmp_path) -> None:
    rng = np.random.default_rng(8)
    tar, non, probe_tar, probe_non, _ = _duration_dependent_trials(rng, 1000, 20_000)
    cal = _fit(tar, non, probe_tar, probe_non)
    save_calibrations([cal], tmp_path / "c.json")
    loaded = load_calibrations(tmp_path / "c.json")
    assert loaded == [cal]
    assert isinstance(loaded[0], Calibration)
    assert loaded[0].thresholds(0.001, 0.01) == cal.thresholds(0.001, 0.01)
    refit = _fit(tar + 0.1, non, probe_tar, probe_non)
    other = Calibration(**{**cal.to_dict(), "norm": "none", "bands": cal.bands})
    merged = merge_calibration(merge_calibration(loaded, other), refit)
    assert len(merged) == 2 and merged[-1] == refit


def test_an_old_format_calibration_is_refused_with_a_clear_message(tmp_path) -> None:
    (tmp_path / "old.json").write_text('{"calibrations": [{"channel": "phone", "slope": 1.0, "offset": 0.0}]}')
    with pytest.raises(ValueError, match="re-run `voiceid calibrate`"):
        load_calibrations(tmp_path / "old.json")
