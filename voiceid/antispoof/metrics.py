"""Presentation-attack detection metrics in ISO/IEC 30107-3 terms (pure functions).

Convention: a higher CM score means more likely bona fide; a presentation is classified as an
attack when its score is below the threshold.
- BPCER (bona fide presentation classification error rate): share of bona fide scoring below it.
- APCER (attack presentation classification error rate): share of attacks scoring at or above it.
The ISO standard reports APCER per attack species (PAI species) and the worst of them; both are here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.metrics import eer as _eer
from voiceid.verify.metrics import threshold_at_fnmr

Scores = npt.NDArray[np.floating]


def threshold_at_bpcer(bonafide: Scores, bpcer: float) -> float:
    """Highest threshold whose BPCER does not exceed `bpcer` (flag when score < threshold).

    With n bona fide scores at most floor(bpcer * n) of them may fall below it, so the threshold is
    the (floor(bpcer * n))-th lowest bona fide score (0-based)."""
    if not 0.0 <= bpcer < 1.0:
        raise ValueError("bpcer must be in [0, 1)")
    return threshold_at_fnmr(bonafide, bpcer)


def bpcer_at(bonafide: Scores, threshold: float) -> float:
    return float(np.mean(np.asarray(bonafide, dtype=np.float64) < threshold))


def apcer_at(spoof: Scores, threshold: float) -> float:
    return float(np.mean(np.asarray(spoof, dtype=np.float64) >= threshold))


def apcer_at_bpcer(bonafide: Scores, spoof: Scores, bpcer: float) -> tuple[float, float]:
    """(APCER, threshold) at the threshold set for `bpcer` on the bona fide scores."""
    threshold = threshold_at_bpcer(bonafide, bpcer)
    return apcer_at(spoof, threshold), threshold


def pad_eer(bonafide: Scores, spoof: Scores) -> tuple[float, float]:
    """Equal error rate (BPCER = APCER) and its threshold."""
    return _eer(bonafide, spoof)


@dataclass(frozen=True)
class PadSummary:
    n_bonafide: int
    n_spoof: int
    eer: float
    eer_threshold: float
    apcer_at_bpcer_1pct: float
    apcer_at_bpcer_5pct: float
    threshold_bpcer_1pct: float
    threshold_bpcer_5pct: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n_bonafide": self.n_bonafide,
            "n_spoof": self.n_spoof,
            "eer": round(self.eer, 4),
            "eer_threshold": round(self.eer_threshold, 4),
            "apcer_at_bpcer_1pct": round(self.apcer_at_bpcer_1pct, 4),
            "apcer_at_bpcer_5pct": round(self.apcer_at_bpcer_5pct, 4),
            "threshold_bpcer_1pct": round(self.threshold_bpcer_1pct, 4),
            "threshold_bpcer_5pct": round(self.threshold_bpcer_5pct, 4),
        }


def summarise_pad(bonafide: Scores, spoof: Scores) -> PadSummary:
    rate, threshold = pad_eer(bonafide, spoof)
    a1, t1 = apcer_at_bpcer(bonafide, spoof, 0.01)
    a5, t5 = apcer_at_bpcer(bonafide, spoof, 0.05)
    return PadSummary(len(bonafide), len(spoof), rate, threshold, a1, a5, t1, t5)
