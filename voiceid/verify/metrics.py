"""Verification metrics on target / non-target score sets (pure functions).

Conventions: a higher score means "more likely the same speaker"; a trial is accepted when
score >= threshold. FNMR = false non-match (miss) rate, FMR = false match (false alarm) rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.floating]


@dataclass(frozen=True)
class ErrorCurve:
    thresholds: npt.NDArray[np.float64]  # ascending; accept when score >= threshold
    fnmr: npt.NDArray[np.float64]
    fmr: npt.NDArray[np.float64]


def error_curve(target: Scores, nontarget: Scores) -> ErrorCurve:
    """FNMR and FMR at every distinct score used as the threshold (plus +inf: accept nothing)."""
    tar = np.sort(np.asarray(target, dtype=np.float64))
    non = np.sort(np.asarray(nontarget, dtype=np.float64))
    if len(tar) == 0 or len(non) == 0:
        raise ValueError("need at least one target and one non-target score")
    thresholds = np.unique(np.concatenate([tar, non, [np.inf]]))
    fnmr = np.searchsorted(tar, thresholds, side="left") / len(tar)
    fmr = (len(non) - np.searchsorted(non, thresholds, side="left")) / len(non)
    return ErrorCurve(thresholds, fnmr, fmr)


def eer(target: Scores, nontarget: Scores) -> tuple[float, float]:
    """Equal error rate and the threshold where it occurs.

    FNMR rises and FMR falls with the threshold; between the last threshold where FNMR < FMR and
    the first where FNMR >= FMR the two step curves cross, and the EER is taken at the crossing of
    the straight lines joining those two operating points.
    """
    curve = error_curve(target, nontarget)
    diff = curve.fnmr - curve.fmr
    i = int(np.argmax(diff >= 0))  # first index with FNMR >= FMR (exists: at +inf FNMR=1, FMR=0)
    if i == 0:
        return float((curve.fnmr[0] + curve.fmr[0]) / 2), float(curve.thresholds[0])
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1)  # fraction of the way from i-1 to i where the lines cross
    rate = curve.fnmr[i - 1] + w * (curve.fnmr[i] - curve.fnmr[i - 1])
    t_hi = curve.thresholds[i] if np.isfinite(curve.thresholds[i]) else curve.thresholds[i - 1]
    threshold = curve.thresholds[i - 1] + w * (t_hi - curve.thresholds[i - 1])
    return float(rate), float(threshold)


def min_dcf(
    target: Scores, nontarget: Scores, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST SRE) and its threshold."""
    curve = error_curve(target, nontarget)
    cost = c_miss * p_target * curve.fnmr + c_fa * (1 - p_target) * curve.fmr
    default = min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i] / default), float(curve.thresholds[i])


def threshold_at_fmr(nontarget: Scores, fmr: float) -> float:
    """Lowest threshold whose FMR does not exceed `fmr` (accept when score >= threshold)."""
    curve = error_curve(np.array([0.0]), nontarget)
    ok = curve.fmr <= fmr
    return float(curve.thresholds[int(np.argmax(ok))])


def fnmr_at_fmr(target: Scores, nontarget: Scores, fmr: float) -> tuple[float, float]:
    """FNMR at the lowest threshold whose FMR does not exceed `fmr`; and that threshold."""
    threshold = threshold_at_fmr(nontarget, fmr)
    tar = np.asarray(target, dtype=np.float64)
    return float(np.mean(tar < threshold)), threshold


def threshold_at_fnmr(target: Scores, fnmr: float) -> float:
    """Highest threshold whose FNMR does not exceed `fnmr`."""
    tar = np.sort(np.asarray(target, dtype=np.float64))
    k = int(np.floor(fnmr * len(tar)))  # at most k targets may fall below the threshold
    return float(tar[min(k, len(tar) - 1)])


def cllr(target_llr: Scores, nontarget_llr: Scores) -> float:
    """Log-likelihood-ratio cost (bits), natural-log LLRs in."""
    tar = np.asarray(target_llr, dtype=np.float64)
    non = np.asarray(nontarget_llr, dtype=np.float64)
    c_tar = np.mean(np.logaddexp(0.0, -tar))
    c_non = np.mean(np.logaddexp(0.0, non))
    return float((c_tar + c_non) / (2 * np.log(2)))


def _pav(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Pool-adjacent-violators: the non-decreasing least-squares fit to y."""
    values: list[float] = []
    weights: list[float] = []
    for v in y:
        values.append(float(v))
        weights.append(1.0)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            v2 = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            values[-2:] = [v2]
            weights[-2:] = [w]
    return np.repeat(values, np.asarray(weights, dtype=int))


def min_cllr(target: Scores, nontarget: Scores) -> float:
    """Cllr after the best monotonic (PAV) calibration: the discrimination-only part of Cllr."""
    tar = np.asarray(target, dtype=np.float64)
    non = np.asarray(nontarget, dtype=np.float64)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    # Ties are broken with non-targets first so PAV pools them, as in the BOSARIS toolkit.
    order = np.lexsort((labels, scores))
    posterior = np.clip(_pav(labels[order]), 1e-12, 1 - 1e-12)
    prior_logodds = np.log(len(tar) / len(non))
    llr = np.log(posterior / (1 - posterior)) - prior_logodds
    sorted_labels = labels[order]
    return cllr(llr[sorted_labels == 1], llr[sorted_labels == 0])


def det_points(target: Scores, nontarget: Scores) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(FMR, FNMR) pairs for a DET plot."""
    curve = error_curve(target, nontarget)
    return curve.fmr, curve.fnmr
