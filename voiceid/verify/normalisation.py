"""Score normalisation against an impostor cohort (pure functions).

A raw cosine score means different things for different voices: some voiceprints sit in a crowded
part of the embedding space and score high against everybody. Normalisation rescales the score by
how the enrolment side and the test side each score against a cohort of impostors:

- S-norm (symmetric): mean of the Z-norm (enrolment vs cohort) and T-norm (test vs cohort) scores.
- AS-norm (adaptive S-norm): the same, but each side's statistics come only from its top-N most
  similar cohort members, the impostors that actually compete with this voice.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

NormMethod = Literal["none", "s-norm", "as-norm"]
NORM_METHODS: tuple[NormMethod, ...] = ("none", "s-norm", "as-norm")
_MIN_STD = 1e-6


def _stats(
    cohort_scores: npt.NDArray[np.floating], top_n: int | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and std over the last axis, optionally of the top-N values only."""
    scores = np.asarray(cohort_scores, dtype=np.float64)
    if top_n is not None and top_n < scores.shape[-1]:
        scores = -np.partition(-scores, top_n - 1, axis=-1)[..., :top_n]
    return scores.mean(axis=-1), np.maximum(scores.std(axis=-1), _MIN_STD)


def normalise_scores(
    scores: npt.NDArray[np.floating],
    enrol_cohort: npt.NDArray[np.floating],
    test_cohort: npt.NDArray[np.floating],
    method: NormMethod,
    top_n: int = 100,
) -> npt.NDArray[np.float64]:
    """Normalise a (n_test, n_enrol) score matrix.

    `enrol_cohort` is (n_enrol, n_cohort): each voiceprint scored against the cohort;
    `test_cohort` is (n_test, n_cohort): each test embedding scored against the cohort.
    """
    raw = np.asarray(scores, dtype=np.float64)
    if method == "none":
        return raw
    if method not in ("s-norm", "as-norm"):
        raise ValueError(f"unknown normalisation {method!r}")
    n = top_n if method == "as-norm" else None
    mu_e, sd_e = _stats(enrol_cohort, n)
    mu_t, sd_t = _stats(test_cohort, n)
    z = (raw - mu_e[None, :]) / sd_e[None, :]
    t = (raw - mu_t[:, None]) / sd_t[:, None]
    return 0.5 * (z + t)


def normalise_score(
    score: float,
    enrol_cohort: npt.NDArray[np.floating],
    test_cohort: npt.NDArray[np.floating],
    method: NormMethod,
    top_n: int = 100,
) -> float:
    """One trial: the single-score form of `normalise_scores` used by the service."""
    out = normalise_scores(np.array([[score]]), np.atleast_2d(enrol_cohort), np.atleast_2d(test_cohort), method, top_n)
    return float(out[0, 0])
