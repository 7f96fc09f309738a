import numpy as np
import pytest

from voiceid.verify.vectors import build_voiceprint, cosine, cosine_matrix, l2_normalise


def test_cosine_known_values() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert cosine(np.array([1.0, 0.0]), np.array([-3.0, 0.0])) == pytest.approx(-1.0)
    assert cosine(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / np.sqrt(2))


def test_cosine_ignores_scale() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(192), rng.standard_normal(192)
    assert cosine(a, b) == pytest.approx(cosine(10 * a, 0.1 * b), abs=1e-6)


def test_cosine_matrix_matches_pairwise() -> None:
    rng = np.random.default_rng(1)
    p, r = rng.standard_normal((4, 8)), rng.standard_normal((3, 8))
    m = cosine_matrix(p, r)
    assert m.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert m[i, j] == pytest.approx(cosine(p[i], r[j]), abs=1e-6)


def test_l2_normalise_keeps_zero_vectors_zero() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_voiceprint_is_normalised_mean_of_normalised_embeddings() -> None:
    # (2,0) and (0,5) normalise to e1 and e2; their mean points at 45 degrees.
    vp = build_voiceprint(np.array([[2.0, 0.0], [0.0, 5.0]]))
    np.testing.assert_allclose(vp, [1 / np.sqrt(2), 1 / np.sqrt(2)], atol=1e-6)


def test_weighted_voiceprint() -> None:
    vp = build_voiceprint(np.array([[1.0, 0.0], [0.0, 1.0]]), weights=np.array([3.0, 1.0]))
    np.testing.assert_allclose(vp, np.array([3.0, 1.0]) / np.sqrt(10), atol=1e-6)


@pytest.mark.parametrize("weights", [np.array([1.0]), np.array([-1.0, 2.0]), np.array([0.0, 0.0])])
def test_bad_weights(weights) -> None:
    with pytest.raises(ValueError):
        build_voiceprint(np.eye(2), weights=weights)


def test_empty_voiceprint() -> None:
    with pytest.raises(ValueError):
        build_voiceprint(np.zeros((0, 4)))
