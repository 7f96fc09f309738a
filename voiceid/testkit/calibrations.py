"""Synthetic score -> LLR calibrations for tests of the decision path with scripted voices: target and
non-target scores drawn from normal distributions, net speech uniform over 1.5-8 s."""

from __future__ import annotations

import numpy as np

from voiceid.models.files import MODEL_VERSION
from voiceid.verify.calibration import Calibration, fit_calibration


def synthetic_calibration(
    rng: np.random.Generator,
    target: tuple[float, float],
    nontarget: tuple[float, float],
    n_target: int = 3000,
    n_nontarget: int = 100_000,
    channel: str = "phone",
    norm: str = "none",
    population_min: int = 0,
) -> Calibration:
    """A calibration fitted on N(`target`) genuine and N(`nontarget`) impostor scores (mean, sd)."""
    return fit_calibration(
        rng.normal(*target, n_target),
        rng.normal(*nontarget, n_nontarget),
        target_probe_s=rng.uniform(1.5, 8, n_target),
        nontarget_probe_s=rng.uniform(1.5, 8, n_nontarget),
        channel=channel,
        norm=norm,
        model_version=MODEL_VERSION,
        fitted_on="synthetic",
        population_min=population_min,
    )
