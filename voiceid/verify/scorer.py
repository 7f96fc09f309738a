"""Probe + voiceprint + channel + evidence -> raw score, normalised score and calibrated LLR.

The service and `voiceid eval` both score through `Scorer`, so the number an IVR receives is the
number the evaluation reports for the same audio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration, select_calibration
from voiceid.verify.cohort import assemble_cohort
from voiceid.verify.normalisation import NormMethod, centre_scores, normalise_scores, population_mean_sq
from voiceid.verify.selfcal import SelfCalibration
from voiceid.verify.vectors import cosine_matrix

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ScoreResult:
    raw: float  # cosine similarity
    score: float  # after normalisation (equal to raw when norm is "none")
    llr: float | None  # calibrated log-likelihood ratio, when a calibration applies
    channel: str
    norm: str
    calibration_id: str | None
    # How many of the operator's own voiceprints were in the trial's cohort: the normalisation regime
    # whose calibration turned the score into the LLR (recorded with the decision).
    population_members: int = 0
    # The population's own correction of that calibration, when one applied (verify/selfcal.py):
    # its version and the nats it took off the LLR.
    self_calibration: str | None = None
    llr_shift: float = 0.0

    @property
    def logged_calibration(self) -> str | None:
        """What the score log records: the regime's calibration and the correction applied to it."""
        if self.calibration_id is None or self.self_calibration is None:
            return self.calibration_id
        return f"{self.calibration_id}+self:{self.self_calibration}"


class Scorer:
    """Raw cosine -> normalised score (the regime's: centred on the enrolled population's mean, or
    AS-norm/S-norm against a fixed-size cohort) -> calibrated LLR."""

    def __init__(
        self,
        norm: NormMethod,
        top_n: int,
        cohorts: Mapping[str, FloatArray],
        calibrations: Mapping[str, Calibration | Sequence[Calibration]],
        cohort_size: int = 1000,
    ) -> None:
        if norm != "none":
            missing = [c for c, e in cohorts.items() if e is None or len(e) == 0]
            if missing or not cohorts:
                raise ValueError(f"{norm} needs a cohort for every channel; missing: {missing or 'all'}")
        self.norm: NormMethod = norm
        self.top_n = top_n
        self.cohorts = dict(cohorts)  # the shipped cohort of each channel
        # channel -> its calibrations, one per normalisation regime, fewest population members first
        self.calibrations: dict[str, tuple[Calibration, ...]] = {
            channel: tuple(sorted([c] if isinstance(c, Calibration) else c, key=lambda x: x.population_min))
            for channel, c in calibrations.items()
        }
        self.cohort_size = cohort_size

    def calibration(self, channel: str, population_members: int | None = None) -> Calibration | None:
        """The channel's calibration for a cohort holding this many enrolled voiceprints (None: the
        fullest regime)."""
        regimes = self.calibrations.get(channel)
        if not regimes:
            return None
        # A cohort of the shipped members alone is regime 0 whatever the population; with no
        # normalisation there is no cohort and no regime.
        n = population_members if self.norm != "none" else None
        return select_calibration(regimes, n)

    def population_in_cohort(self, population: FloatArray | None) -> int:
        """How many population members a trial's cohort takes (at most the fixed cohort size)."""
        return 0 if population is None else min(len(population), self.cohort_size)

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
        if self.norm == "centre":
            raise ValueError("centring needs an enrolled population; the shipped cohort alone has none")
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
        correction: SelfCalibration | None = None,
        regime_members: int | None = None,
    ) -> ScoreResult:
        """`correction`: the population's self-calibration (applied when it was fitted for the
        calibration this trial's regime selects). `regime_members` overrides the member count that
        selects the regime, for the self-calibration's own trials, whose cohort also leaves out the
        enrolled impostor (as an unenrolled one would be) while the service's regime counts only the
        claimed speaker out."""
        members = self.population_in_cohort(population) if regime_members is None else regime_members
        calibration = self.calibration(channel, members)
        # The regime's calibration says how its scores were made: below the population size where
        # normalisation pays (the mean of a handful of voices is mostly their own differences), the
        # regime is the raw cosine; from there, the centred cosine (or AS-norm where configured).
        norm = self.norm if calibration is None else calibration.norm
        raw = cosine_matrix(probe, voiceprint).astype(np.float64)
        normalised = raw
        if norm == "centre":
            # Centred on the enrolled members of the trial's cohort only: the shipped cohort is another
            # population, and its mean is not what this operator's callers share (it lowered genuine
            # ACCEPT on the dev set where the population's own mean raised it).
            if population is None or members == 0:
                raise ValueError("centring needs the enrolled population (the regime says how many)")
            pop = population[: self.cohort_size]
            enrol = cosine_matrix(voiceprint, pop)
            test = cosine_matrix(probe, pop)
            normalised = centre_scores(raw, enrol, test, population_mean_sq(pop))
        elif norm != "none":
            cohort = self.cohort_for(channel, population)
            enrol = cosine_matrix(voiceprint, cohort)
            test = cosine_matrix(probe, cohort)
            normalised = normalise_scores(raw, enrol, test, norm, self.top_n)  # type: ignore[arg-type]
        value = float(normalised[0, 0])
        llr = None if calibration is None else calibration.llr(value, probe_speech_s)
        shift = None
        if correction is not None and calibration is not None:
            shift = correction.for_calibration(calibration.calibration_id)
        delta = 0.0 if shift is None or llr is None else shift.shift_for(probe_speech_s)
        return ScoreResult(
            raw=float(raw[0, 0]),
            score=value,
            llr=None if llr is None else llr - delta,
            channel=channel,
            norm=norm,
            calibration_id=None if calibration is None else calibration.calibration_id,
            population_members=members,
            self_calibration=None if shift is None or correction is None else correction.version,
            llr_shift=delta,
        )
