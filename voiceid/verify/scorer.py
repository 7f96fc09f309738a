"""Probe + voiceprint + channel -> raw score, normalised score, LLR and the policy that applies.

The service and `voiceid eval` both score through `Scorer`, so the number an IVR receives is the
number the evaluation reports for the same audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration
from voiceid.verify.normalisation import NormMethod, normalise_scores
from voiceid.verify.scoring import cosine_matrix

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ScoreResult:
    raw: float  # cosine similarity
    score: float  # after normalisation (equal to raw when norm is "none")
    llr: float | None  # calibrated log-likelihood ratio, when a calibration applies
    channel: str
    norm: str
    calibration_id: str | None


class Scorer:
    def __init__(
        self,
        norm: NormMethod,
        top_n: int,
        cohorts: Mapping[str, FloatArray],
        calibrations: Mapping[str, Calibration],
    ) -> None:
        if norm != "none":
            missing = [c for c, e in cohorts.items() if e is None or len(e) == 0]
            if missing or not cohorts:
                raise ValueError(f"{norm} needs a cohort for every channel; missing: {missing or 'all'}")
        self.norm: NormMethod = norm
        self.top_n = top_n
        self.cohorts = dict(cohorts)
        self.calibrations = dict(calibrations)

    def calibration(self, channel: str) -> Calibration | None:
        return self.calibrations.get(channel)

    def score_matrix(
        self, probes: npt.NDArray[np.floating], voiceprints: npt.NDArray[np.floating], channel: str
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(raw, normalised) scores of every probe against every voiceprint, (n_probe, n_vp)."""
        raw = cosine_matrix(probes, voiceprints).astype(np.float64)
        if self.norm == "none":
            return raw, raw
        cohort = self.cohorts[channel]
        enrol_cohort = cosine_matrix(voiceprints, cohort)
        test_cohort = cosine_matrix(probes, cohort)
        return raw, normalise_scores(raw, enrol_cohort, test_cohort, self.norm, self.top_n)

    def score(self, probe: npt.NDArray[np.floating], voiceprint: npt.NDArray[np.floating], channel: str) -> ScoreResult:
        raw, normalised = self.score_matrix(np.atleast_2d(probe), np.atleast_2d(voiceprint), channel)
        calibration = self.calibration(channel)
        value = float(normalised[0, 0])
        return ScoreResult(
            raw=float(raw[0, 0]),
            score=value,
            llr=None if calibration is None else calibration.llr(value),
            channel=channel,
            norm=self.norm,
            calibration_id=None if calibration is None else calibration.calibration_id,
        )
