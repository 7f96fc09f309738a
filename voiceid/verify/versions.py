"""Content hashes of the data a replica decides with (pure): the shipped/built impostor cohorts and
the calibration with its thresholds. Two replicas with equal hashes decide a given probe alike;
`GET /readyz` reports them and PostgreSQL deployments check them against the pinned ones."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration
from voiceid.verify.decision import Thresholds

if TYPE_CHECKING:
    from voiceid.verify.policy import DecisionPolicy
    from voiceid.verify.scorer import Scorer

COHORT = "cohort"
CALIBRATION = "calibration"


def cohort_version(norm: str, top_n: int, cohort_size: int, cohorts: Mapping[str, npt.NDArray[np.floating]]) -> str:
    digest = hashlib.sha256(json.dumps({"norm": norm, "top_n": top_n, "cohort_size": cohort_size}).encode())
    for channel in sorted(cohorts):
        digest.update(channel.encode() + b"\0")
        digest.update(np.ascontiguousarray(cohorts[channel], dtype="<f4").tobytes())
    return digest.hexdigest()


def calibration_version(
    calibrations: Mapping[str, Sequence[Calibration]],
    pinned: Thresholds | None,
    targets: tuple[float, float] | None = None,
) -> str:
    body = {
        # every regime of every channel, in a stable order
        "calibrations": [
            cal.to_dict()
            for channel in sorted(calibrations)
            for cal in sorted(calibrations[channel], key=lambda x: x.population_min)
        ],
        "pinned": None if pinned is None else [pinned.accept, pinned.reject],
        "targets": targets,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def decision_versions(scorer: Scorer, policy: DecisionPolicy) -> dict[str, str]:
    return {
        COHORT: cohort_version(scorer.norm, scorer.top_n, scorer.cohort_size, scorer.cohorts),
        # The targets too: two replicas with other VOICEID_TARGET_FMR would decide differently.
        CALIBRATION: calibration_version(scorer.calibrations, policy.pinned, (policy.target_fmr, policy.target_fnmr)),
    }
