"""Score normalisation against an impostor cohort (pure functions).

A raw cosine score means different things for different voices: some voiceprints sit in a crowded
part of the embedding space and score high against everybody. Normalisation rescales the score by
how the enrolment side and the test side each score against a cohort of impostors:

- S-norm (symmetric): mean of the Z-norm (enrolment vs cohort) and T-norm (test vs cohort) scores.
- AS-norm (adaptive S-norm): the same, but each side's statistics come only from its top-N most
  similar cohort members, the impostors that actually compete with this voice.
- Centring: the cosine after subtracting the mean of the enrolled population's voiceprints from both
  sides. It needs no cohort statistics beyond that mean, so it pays from a few dozen enrolled callers,
  where AS-norm against so few in-domain voices (topped up with the shipped, out-of-domain cohort) does
  not: the mean is what the operator's callers, their accent, age and lines, have in common, and it is
  exactly what makes two strangers from the same population look alike to the raw cosine.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

NormMethod = Literal["none", "s-norm", "as-norm", "centre"]
NORM_METHODS: tuple[NormMethod, ...] = ("none", "s-norm", "as-norm", "centre")
# The normalisations by a cohort's score statistics (`normalise_scores`); centring takes the population's
# mean instead (`centre_scores`).
COHORT_NORMS: tuple[NormMethod, ...] = ("s-norm", "as-norm")
_MIN_STD = 1e-6
_MIN_NORM = 1e-6


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
    if method not in COHORT_NORMS:
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


def centre_scores(
    scores: npt.NDArray[np.floating],
    enrol_population: npt.NDArray[np.floating],
    test_population: npt.NDArray[np.floating],
    mean_sq: float,
) -> npt.NDArray[np.float64]:
    """Cosines of (n_test, n_enrol) trials after both sides are centred on the population mean m, with
    the similarity the mean's own sampling noise lends every pair taken out.

    Written in cosines so that it needs no vectors: with unit probe p, voiceprint v and members c_i,
    m = mean(c_i), p·m = mean(cos(p, c_i)) and v·m = mean(cos(v, c_i)), so
    cos(p - m, v - m) = (p·v - p·m - v·m + |m|²) / (|p - m| |v - m|), |p - m|² = 1 - 2 p·m + |m|².
    `enrol_population` is (n_enrol, n) and `test_population` (n_test, n): the trial's n enrolled
    members only (never the shipped cohort: its mean is another population's); `mean_sq` is |m|² of
    the members as unit vectors.

    A mean of n voices is the population's mean plus the average of their n individual differences;
    centring subtracts that remainder from both sides, so two strangers share it: |d/n|² against
    |d|²(1 + 1/n) for differences d of equal size, a cosine of 1/(n + 1). Left in, the centred score
    would mean something else at every population size (on the dev set the impostor score at FMR 0.1 %
    fell by 0.11-0.13 between 5 and 100 members); taken out, (c - b) / (1 - b) with b = 1/(n + 1),
    by 0.04. What is left the regimes absorb (one calibration per size band).
    """
    raw = np.asarray(scores, dtype=np.float64)
    enrol_cos = np.asarray(enrol_population, dtype=np.float64)
    n = enrol_cos.shape[-1]
    enrol = enrol_cos.mean(axis=-1)
    test = np.asarray(test_population, dtype=np.float64).mean(axis=-1)
    num = raw - test[:, None] - enrol[None, :] + mean_sq
    # 1 - 2 p·m + |m|² is |p - m|²: zero only for a probe equal to the mean, clipped so it stays finite.
    norm_t = np.sqrt(np.maximum(1.0 - 2.0 * test + mean_sq, _MIN_NORM))
    norm_e = np.sqrt(np.maximum(1.0 - 2.0 * enrol + mean_sq, _MIN_NORM))
    centred = num / (norm_t[:, None] * norm_e[None, :])
    shared = 1.0 / (n + 1)
    out: npt.NDArray[np.float64] = (centred - shared) / (1.0 - shared)
    return out


def population_mean_sq(members: npt.NDArray[np.floating]) -> float:
    """|m|² of the members' mean as unit vectors (the last term of `centre_scores`)."""
    rows = np.asarray(members, dtype=np.float64)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), _MIN_NORM)
    mean = rows.mean(axis=0)
    return float(mean @ mean)
