"""Fitting the score -> LLR calibration from evaluation trials: what `voiceid calibrate` does, and the
pooling of trial sets that the bench scripts fitting their own calibrations (fold-wise, on a
sub-population) share with it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings
from voiceid.evaluation.runner import TrialScores
from voiceid.evaluation.verification import (
    Embedding,
    EvaluationInputError,
    ManifestTrials,
    RunSpec,
    default_cohort_manifest,
)
from voiceid.verify.calibration import (
    DEFAULT_REGIMES,
    Calibration,
    fit_calibration,
    load_calibrations,
    merge_calibration,
    save_calibrations,
)
from voiceid.verify.normalisation import NormMethod


@dataclass(frozen=True)
class PooledTrials:
    """Trials of several sets (probe lengths, folds) pooled into one fit: score, net speech of the
    probe and target flag per trial."""

    scores: npt.NDArray[np.float32]
    probe_s: npt.NDArray[np.float64]
    is_target: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, sets: Iterable[TrialScores]) -> PooledTrials:
        scores, probe, target = [], [], []
        for trials in sets:
            if trials.probe_speech_s is None:
                raise ValueError("a calibration fit needs the net speech of every probe")
            scores.append(trials.scores.ravel())
            probe.append(np.broadcast_to(trials.probe_speech_s[:, None], trials.scores.shape).ravel())
            target.append(trials.is_target.ravel())
        return cls(np.concatenate(scores), np.concatenate(probe), np.concatenate(target).astype(bool))

    def fit(self, channel: str, norm: str, model_version: str, fitted_on: str, population_min: int = 0) -> Calibration:
        t = self.is_target
        return fit_calibration(
            self.scores[t],
            self.scores[~t],
            target_probe_s=self.probe_s[t],
            nontarget_probe_s=self.probe_s[~t],
            channel=channel,
            norm=norm,
            model_version=model_version,
            fitted_on=fitted_on,
            population_min=population_min,
        )


@dataclass(frozen=True)
class RegimeFit:
    """One regime of `voiceid calibrate`: its fitted calibration, or why it was skipped."""

    population_min: int | None  # None: the regime of the whole population (or the raw cosine)
    calibration: Calibration | None
    skipped: str | None = None


@dataclass(frozen=True)
class CalibrateOptions:
    """The options of `voiceid calibrate` (None: the service's setting)."""

    manifest: Path
    channel: str = "clean"
    out: Path = Path("calibration.json")
    norm: str | None = None
    top_n: int | None = None
    cohort: str | None = None
    cohort_size: int | None = None
    enrol_utts: int = 3
    probe_utts: Sequence[int] = (1, 2, 3)
    cohort_manifest: Path | None = None
    regimes: Sequence[str] = ()  # 'none', population sizes, 'centre:N' (empty: DEFAULT_REGIMES)


def regime_specs(norm: str, cohort_source: str, regimes: Sequence[str]) -> list[tuple[str, int | None]]:
    """(normalisation, population limit) of each regime to fit: "none" is the raw-cosine regime, "N" the
    service's normalisation with N enrolled members, "centre:N" the cosine centred on N members' mean."""
    if norm == "none" or cohort_source != "population":
        return [(norm, None)]
    specs: list[tuple[str, int | None]] = []
    for value in regimes:
        method, _, size = value.rpartition(":")
        if value == "none":
            specs.append(("none", None))
        elif method in ("", "centre") and size.isdigit() and int(size) > 0:
            specs.append((method or norm, int(size)))
        else:
            raise EvaluationInputError(f"a regime is 'none', a population size N or 'centre:N', not {value!r}")
    return specs


def calibrate_channel(settings: Settings, options: CalibrateOptions) -> list[RegimeFit]:
    """Fit each regime's calibration of one channel on the manifest's trials (probes of every length in
    `probe_utts` pooled, so every net-speech band is represented), merge them into `options.out`."""
    norm = options.norm or settings.score_norm
    source = options.cohort or settings.cohort_source
    cohort_manifest = (options.cohort_manifest or default_cohort_manifest(settings)) if norm != "none" else None
    specs = regime_specs(norm, source, options.regimes or DEFAULT_REGIMES)
    lengths = sorted(set(options.probe_utts))
    if not lengths:
        raise EvaluationInputError("--probe-utts names no probe length")
    manifest = ManifestTrials.read(RunSpec(options.manifest, options.channel, options.enrol_utts, cohort_manifest))
    embedding = Embedding.from_settings(settings)
    runs = [manifest.embed(embedding, n) for n in lengths]
    existing = load_calibrations(options.out) if options.out.is_file() else []
    n_speakers = len(runs[0].protocol.speakers)
    fits: list[RegimeFit] = []
    for regime_norm, limit in specs:
        if limit is not None and limit > n_speakers - 2:
            # Each trial's cohort leaves out the claimed and the test speaker: fewer would mislabel the regime.
            fits.append(
                RegimeFit(limit, None, f"needs at least {limit + 2} speakers in the manifest ({n_speakers}); skipped")
            )
            continue
        pooled = PooledTrials.of(
            run.trials(
                cast(NormMethod, regime_norm),
                options.top_n or settings.score_top_n,
                source,
                options.cohort_size or settings.cohort_size,
                limit,
            )
            for run in runs
        )
        fitted = pooled.fit(
            runs[0].service_channel,
            regime_norm,
            embedding.model_version,
            f"{options.manifest.parent.name}:{options.channel}",
            limit or 0,
        )
        existing = merge_calibration(existing, fitted)
        fits.append(RegimeFit(limit, fitted))
    save_calibrations(existing, options.out)
    return fits
