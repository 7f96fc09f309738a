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


@dataclass(frozen=True)
class CohortScores:
    """Scores of the voiceprint (`enrol`) and of the probe (`test`) against the same cohort members:
    the operator's own enrolled population, minus the claimed speaker."""

    enrol: npt.NDArray[np.floating]
    test: npt.NDArray[np.floating]
    members: int  # population size the scores were drawn from (AS-norm may pass only its top-N)


class Scorer:
    def __init__(
        self,
        norm: NormMethod,
        top_n: int,
        cohorts: Mapping[str, FloatArray],
        calibrations: Mapping[str, Calibration],
        population_min: int = 0,
    ) -> None:
        if norm != "none":
            missing = [c for c, e in cohorts.items() if e is None or len(e) == 0]
            if missing or not cohorts:
                raise ValueError(f"{norm} needs a cohort for every channel; missing: {missing or 'all'}")
        self.norm: NormMethod = norm
        self.top_n = top_n
        self.cohorts = dict(cohorts)
        self.calibrations = dict(calibrations)
        # Below this many population members their statistics are too noisy on their own, and the
        # shipped cohort is added to them.
        self.population_min = population_min

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

    def cohort_scores(
        self,
        probe: npt.NDArray[np.floating],
        voiceprint: npt.NDArray[np.floating],
        channel: str,
        population: CohortScores | None,
    ) -> CohortScores:
        """The cohort a trial is normalised against: the population when it is large enough,
        otherwise the population together with the shipped cohort of the channel."""
        if population is not None and population.members >= self.population_min:
            return population
        cohort = self.cohorts[channel]
        enrol = cosine_matrix(voiceprint, cohort)[0]
        test = cosine_matrix(probe, cohort)[0]
        if population is None:
            return CohortScores(enrol, test, len(cohort))
        return CohortScores(
            np.concatenate([enrol, population.enrol]),
            np.concatenate([test, population.test]),
            len(cohort) + population.members,
        )

    def score(
        self,
        probe: npt.NDArray[np.floating],
        voiceprint: npt.NDArray[np.floating],
        channel: str,
        population: CohortScores | None = None,
    ) -> ScoreResult:
        raw = cosine_matrix(probe, voiceprint).astype(np.float64)
        normalised = raw
        if self.norm != "none":
            cohort = self.cohort_scores(probe, voiceprint, channel, population)
            normalised = normalise_scores(raw, cohort.enrol[None], cohort.test[None], self.norm, self.top_n)
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
