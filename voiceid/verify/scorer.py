"""Probe + voiceprint + channel + evidence -> raw score, normalised score and calibrated LLR.

The service and `voiceid eval` both score through `Scorer`, so the number an IVR receives is the
number the evaluation reports for the same audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration
from voiceid.verify.cohort import assemble_cohort
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
    """Raw cosine -> normalised score (AS-norm/S-norm against a fixed-size cohort) -> calibrated LLR."""

    def __init__(
        self,
        norm: NormMethod,
        top_n: int,
        cohorts: Mapping[str, FloatArray],
        calibrations: Mapping[str, Calibration],
        cohort_size: int = 1000,
    ) -> None:
        if norm != "none":
            missing = [c for c, e in cohorts.items() if e is None or len(e) == 0]
            if missing or not cohorts:
                raise ValueError(f"{norm} needs a cohort for every channel; missing: {missing or 'all'}")
        self.norm: NormMethod = norm
        self.top_n = top_n
        self.cohorts = dict(cohorts)  # the shipped cohort of each channel
        self.calibrations = dict(calibrations)
        self.cohort_size = cohort_size

    def calibration(self, channel: str) -> Calibration | None:
        return self.calibrations.get(channel)

    def cohort_for(self, channel: str, population: FloatArray | None) -> FloatArray:
        """The cohort of a trial: population members (in sampling order, claimed speaker removed)
        topped up from the shipped cohort to the fixed size."""
        empty = np.zeros((0, self.cohorts[channel].shape[1]), dtype=np.float32)
        return assemble_cohort(population if population is not None else empty, self.cohorts[channel], self.cohort_size)

    def score_matrix(
        self, probes: npt.NDArray[np.floating], voiceprints: npt.NDArray[np.floating], channel: str
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(raw, normalised) scores of every probe against every voiceprint with the shipped cohort."""
        raw = cosine_matrix(probes, voiceprints).astype(np.float64)
        if self.norm == "none":
            return raw, raw
        cohort = self.cohort_for(channel, None)
        enrol_cohort = cosine_matrix(voiceprints, cohort)
        test_cohort = cosine_matrix(probes, cohort)
        return raw, normalise_scores(raw, enrol_cohort, test_cohort, self.norm, self.top_n)

    def score(
        self,
        probe: npt.NDArray[np.floating],
        voiceprint: npt.NDArray[np.floating],
        channel: str,
        probe_speech_s: float,
        population: FloatArray | None = None,
    ) -> ScoreResult:
        raw = cosine_matrix(probe, voiceprint).astype(np.float64)
        normalised = raw
        if self.norm != "none":
            cohort = self.cohort_for(channel, population)
            enrol = cosine_matrix(voiceprint, cohort)
            test = cosine_matrix(probe, cohort)
            normalised = normalise_scores(raw, enrol, test, self.norm, self.top_n)
        calibration = self.calibration(channel)
        value = float(normalised[0, 0])
        return ScoreResult(
            raw=float(raw[0, 0]),
            score=value,
            llr=None if calibration is None else calibration.llr(value, probe_speech_s),
            channel=channel,
            norm=self.norm,
            calibration_id=None if calibration is None else calibration.calibration_id,
        )
