import numpy as np
import pytest

from voiceid.verify.normalisation import normalise_score, normalise_scores


def test_none_returns_raw_scores() -> None:
    s = np.array([[0.3, 0.1]])
    np.testing.assert_array_equal(normalise_scores(s, np.zeros((2, 3)), np.zeros((1, 3)), "none"), s)


def test_s_norm_known_values() -> None:
    # Enrolment cohort scores 0.1, 0.3 -> mean 0.2, std 0.1; test cohort 0.0, 0.4 -> mean 0.2, std 0.2.
    out = normalise_score(0.6, np.array([0.1, 0.3]), np.array([0.0, 0.4]), "s-norm")
    assert out == pytest.approx(0.5 * ((0.6 - 0.2) / 0.1 + (0.6 - 0.2) / 0.2))


def test_as_norm_uses_only_the_top_n_cohort_scores() -> None:
    enrol = np.array([0.9, 0.7, -0.5, -0.9])  # top-2: mean 0.8, std 0.1
    test = np.array([0.5, 0.3, 0.0, -1.0])  # top-2: mean 0.4, std 0.1
    out = normalise_score(1.0, enrol, test, "as-norm", top_n=2)
    assert out == pytest.approx(0.5 * ((1.0 - 0.8) / 0.1 + (1.0 - 0.4) / 0.1))
    # With top_n at least the cohort size, AS-norm is S-norm.
    assert normalise_score(1.0, enrol, test, "as-norm", top_n=10) == pytest.approx(
        normalise_score(1.0, enrol, test, "s-norm")
    )


def test_matrix_form_matches_single_trials() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (3, 4))
    enrol, test = rng.uniform(-1, 1, (4, 50)), rng.uniform(-1, 1, (3, 50))
    out = normalise_scores(scores, enrol, test, "as-norm", top_n=10)
    for i in range(3):
        for j in range(4):
            assert out[i, j] == pytest.approx(normalise_score(scores[i, j], enrol[j], test[i], "as-norm", 10))


def test_normalisation_removes_a_per_speaker_offset() -> None:
    # A "crowded" voiceprint scores 0.3 higher against everyone; after S-norm its impostor scores
    # look like everybody else's.
    rng = np.random.default_rng(1)
    cohort_plain = rng.normal(0.0, 0.1, 200)
    cohort_crowded = cohort_plain + 0.3
    test_cohort = rng.normal(0.0, 0.1, 200)
    impostor_plain = normalise_score(0.1, cohort_plain, test_cohort, "s-norm")
    impostor_crowded = normalise_score(0.4, cohort_crowded, test_cohort + 0.3, "s-norm")
    assert impostor_crowded == pytest.approx(impostor_plain, abs=1e-9)


def test_zero_variance_cohort_does_not_divide_by_zero() -> None:
    assert np.isfinite(normalise_score(0.5, np.full(5, 0.2), np.full(5, 0.2), "s-norm"))


def test_unknown_method() -> None:
    with pytest.raises(ValueError):
        normalise_scores(np.zeros((1, 1)), np.zeros((1, 2)), np.zeros((1, 2)), "z-norm")  # type: ignore[arg-type]
