"""Calibration of scores to log-likelihood ratios, and policy thresholds from target error rates.

Calibration is an affine map `llr = slope * score + offset` fitted by prior-weighted logistic
regression (the BOSARIS/Brümmer recipe), so that `llr` is the natural-log likelihood ratio of
"same speaker" against "different speaker". Thresholds are not hand-typed: the accept threshold
is the score at which the calibration trials' false-match rate meets the policy target, and the
reject threshold the score under which only the target share of genuine callers fall.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from voiceid.evaluation.metrics import threshold_at_fmr, threshold_at_fnmr

Scores = npt.NDArray[np.floating]


def fit_logistic(target: Scores, nontarget: Scores, prior: float = 0.5) -> tuple[float, float]:
    """(slope, offset) minimising the prior-weighted cross-entropy (Cllr at `prior`).

    Each class is weighted by prior / class size, so the fit does not depend on how many
    non-target trials the protocol happens to produce.
    """
    tar = np.asarray(target, dtype=np.float64)
    non = np.asarray(nontarget, dtype=np.float64)
    if len(tar) == 0 or len(non) == 0:
        raise ValueError("calibration needs target and non-target scores")
    logit_prior = np.log(prior / (1 - prior))
    # Scale scores so the optimiser works on O(1) numbers whatever the score range.
    centre = 0.5 * (tar.mean() + non.mean())
    scale = max(float(np.concatenate([tar, non]).std()), 1e-9)
    ts, ns = (tar - centre) / scale, (non - centre) / scale

    def objective(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        a, b = params
        lt = a * ts + b + logit_prior
        ln = a * ns + b + logit_prior
        cost = prior * np.mean(np.logaddexp(0, -lt)) + (1 - prior) * np.mean(np.logaddexp(0, ln))
        gt = -prior * (1 / (1 + np.exp(lt))) / len(ts)  # d cost / d lt
        gn = (1 - prior) * (1 / (1 + np.exp(-ln))) / len(ns)
        grad = np.array([np.sum(gt * ts) + np.sum(gn * ns), np.sum(gt) + np.sum(gn)])
        return float(cost), grad

    result = minimize(objective, x0=np.array([1.0, 0.0]), jac=True, method="BFGS", options={"gtol": 1e-10})
    a, b = (float(v) for v in result.x)
    return a / scale, b - a * centre / scale


@dataclass(frozen=True)
class Calibration:
    """Everything the service needs to turn a (normalised) score into a calibrated decision."""

    channel: str  # "phone" or "wideband"
    norm: str  # normalisation the scores were computed with
    model_version: str
    slope: float
    offset: float
    target_fmr: float
    target_fnmr: float
    accept_threshold: float
    reject_threshold: float
    # The stricter pair applied when the audio quality is poor (short speech, low SNR).
    low_quality_accept_threshold: float
    low_quality_reject_threshold: float
    n_target: int
    n_nontarget: int
    fitted_on: str

    @property
    def calibration_id(self) -> str:
        return f"{self.channel}/{self.norm}/{self.fitted_on}"

    def llr(self, score: float) -> float:
        return self.slope * score + self.offset

    def llrs(self, scores: Scores) -> npt.NDArray[np.float64]:
        return self.slope * np.asarray(scores, dtype=np.float64) + self.offset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)


def policy_thresholds(target: Scores, nontarget: Scores, target_fmr: float, target_fnmr: float) -> tuple[float, float]:
    """(accept, reject): accept where FMR <= target_fmr; reject where FNMR <= target_fnmr.

    When the two populations are well separated the FNMR point lies above the FMR point; the
    reject threshold is then clamped to the accept threshold (no INCONCLUSIVE band by score).
    """
    accept = threshold_at_fmr(nontarget, target_fmr)
    reject = min(threshold_at_fnmr(target, target_fnmr), accept)
    return accept, reject


def fit_calibration(
    target: Scores,
    nontarget: Scores,
    *,
    channel: str,
    norm: str,
    model_version: str,
    fitted_on: str,
    target_fmr: float = 0.001,
    target_fnmr: float = 0.01,
    low_quality_factor: float = 10.0,
) -> Calibration:
    slope, offset = fit_logistic(target, nontarget)
    accept, reject = policy_thresholds(target, nontarget, target_fmr, target_fnmr)
    lq_accept, lq_reject = policy_thresholds(
        target, nontarget, target_fmr / low_quality_factor, target_fnmr / low_quality_factor
    )
    return Calibration(
        channel=channel,
        norm=norm,
        model_version=model_version,
        slope=slope,
        offset=offset,
        target_fmr=target_fmr,
        target_fnmr=target_fnmr,
        accept_threshold=accept,
        reject_threshold=reject,
        low_quality_accept_threshold=max(lq_accept, accept),
        low_quality_reject_threshold=min(lq_reject, reject),
        n_target=len(target),
        n_nontarget=len(nontarget),
        fitted_on=fitted_on,
    )


def save_calibrations(calibrations: list[Calibration], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"calibrations": [c.to_dict() for c in calibrations]}, indent=2) + "\n")


def load_calibrations(path: Path) -> list[Calibration]:
    data = json.loads(path.read_text())
    return [Calibration.from_dict(c) for c in data["calibrations"]]


def merge_calibration(existing: list[Calibration], new: Calibration) -> list[Calibration]:
    """Replace the entry for the same channel, normalisation and model; keep the others."""
    key = (new.channel, new.norm, new.model_version)
    return [c for c in existing if (c.channel, c.norm, c.model_version) != key] + [new]
