import numpy as np
import pytest

from voiceid.verify import metrics


def test_perfect_separation_has_zero_eer() -> None:
    eer, thr = metrics.eer(np.array([0.8, 0.9, 1.0]), np.array([0.1, 0.2, 0.3]))
    assert eer == 0.0
    assert 0.3 < thr <= 0.8


def test_eer_on_a_hand_computed_set() -> None:
    # Between thresholds 0.5 and 0.6 one target in five is missed (0.4) and one non-target in five
    # is accepted (0.65): FNMR = FMR = 0.2.
    eer, thr = metrics.eer(np.array([0.4, 0.6, 0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3, 0.5, 0.65]))
    assert eer == pytest.approx(0.2)
    assert 0.4 <= thr <= 0.65


def test_eer_interpolates_between_operating_points() -> None:
    # Interleaved n t n t ...: at any threshold between a non-target and the next target the
    # curves sit at (k/10, (10-k)/10); they cross at k = 5, EER = 0.5.
    tar = np.arange(1, 11) / 10
    non = np.arange(1, 11) / 10 - 0.05
    assert metrics.eer(tar, non)[0] == pytest.approx(0.5)


def test_eer_of_two_gaussians_matches_theory() -> None:
    rng = np.random.default_rng(0)
    d = 2.0  # separation in standard deviations: EER = Phi(-d/2)
    tar = rng.normal(d, 1, 200_000)
    non = rng.normal(0, 1, 200_000)
    from scipy.stats import norm

    eer, thr = metrics.eer(tar, non)
    assert eer == pytest.approx(norm.cdf(-d / 2), abs=0.003)
    assert thr == pytest.approx(d / 2, abs=0.02)


def test_min_dcf_on_known_set() -> None:
    tar = np.array([0.6, 0.7, 0.8, 0.9])
    non = np.array([0.1, 0.2, 0.3, 0.65])
    # p=0.5: best threshold 0.6..0.65 costs 0.5*(0 + 1/4) -> normalised by 0.5 -> 0.25,
    # or threshold 0.7: 0.5*(1/4 + 0) -> 0.25. min = 0.25.
    dcf, _ = metrics.min_dcf(tar, non, 0.5)
    assert dcf == pytest.approx(0.25)
    # Rare targets: a false alarm costs far more, so the minimum is FNMR-weighted.
    dcf, thr = metrics.min_dcf(tar, non, 0.01)
    assert thr > 0.65
    assert dcf == pytest.approx(0.01 * 0.25 / 0.01)


def test_min_dcf_never_exceeds_one() -> None:
    rng = np.random.default_rng(3)
    dcf, _ = metrics.min_dcf(rng.normal(0, 1, 100), rng.normal(0, 1, 1000), 0.001)
    assert dcf <= 1.0


def test_fnmr_at_fmr() -> None:
    non = np.arange(1000) / 1000  # FMR at threshold t = fraction >= t
    tar = np.array([0.985, 0.995, 0.5, 0.9995])
    fnmr, thr = metrics.fnmr_at_fmr(tar, non, 0.01)
    assert thr == pytest.approx(0.990)
    assert fnmr == pytest.approx(2 / 4)
    fnmr, thr = metrics.fnmr_at_fmr(tar, non, 0.001)
    assert thr == pytest.approx(0.999)
    assert fnmr == pytest.approx(3 / 4)


def test_threshold_at_fnmr() -> None:
    tar = np.arange(1, 101) / 100
    assert metrics.threshold_at_fnmr(tar, 0.05) == pytest.approx(0.06)


def test_cllr_of_uninformative_llrs_is_one_bit() -> None:
    assert metrics.cllr(np.zeros(10), np.zeros(10)) == pytest.approx(1.0)


def test_cllr_of_confident_correct_llrs_is_near_zero() -> None:
    assert metrics.cllr(np.full(10, 20.0), np.full(10, -20.0)) < 1e-6


def test_cllr_punishes_confident_errors() -> None:
    assert metrics.cllr(np.full(10, -5.0), np.full(10, 5.0)) > 5


def test_min_cllr_of_separable_scores_is_zero_and_bounded_by_cllr() -> None:
    assert metrics.min_cllr(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(5)
    tar, non = rng.normal(2, 1, 500), rng.normal(0, 1, 5000)
    # Cllr of the raw scores used as LLRs is worse than after optimal calibration.
    assert metrics.min_cllr(tar, non) < metrics.cllr(tar, non)
    assert 0 < metrics.min_cllr(tar, non) < 1


def test_min_cllr_of_identical_distributions_is_one() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 4000)
    assert metrics.min_cllr(x[:2000], x[2000:]) == pytest.approx(1.0, abs=0.02)


def test_empty_sets_are_rejected() -> None:
    with pytest.raises(ValueError):
        metrics.eer(np.array([]), np.array([0.1]))
