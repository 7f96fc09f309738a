"""Which thresholds apply to a call: per channel, from the calibration, widened for poor audio.

Thresholds come from the channel's calibration (set there from a target false-match rate), unless
an operator pinned them with VOICEID_ACCEPT_THRESHOLD / VOICEID_REJECT_THRESHOLD. Poor audio
(little net speech, low SNR) gets the calibration's stricter pair, so the INCONCLUSIVE band is
wider exactly when a score is least trustworthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voiceid.audio.frontend import FrontEndConfig
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.verify.calibration import Calibration, load_calibrations
from voiceid.verify.cohort import BUILTIN_DIR, PHONE, SERVICE_CHANNELS, find_cohort
from voiceid.verify.decision import Thresholds
from voiceid.verify.scorer import Scorer

BUILTIN_CALIBRATION = BUILTIN_DIR / "calibration.json"


@dataclass(frozen=True)
class AppliedThresholds:
    thresholds: Thresholds
    low_quality: bool


def is_low_quality(quality: QualityReport, min_speech_s: float, min_snr_db: float) -> bool:
    return quality.net_speech_s < min_speech_s or quality.snr_db < min_snr_db


@dataclass(frozen=True)
class DecisionPolicy:
    calibrations: dict[str, Calibration]
    pinned: Thresholds | None  # operator-set thresholds override the calibration
    fallback: Thresholds  # with no calibration and no pin (raw cosine, norm "none")
    quality_min_speech_s: float
    quality_min_snr_db: float

    def thresholds(self, channel: str | None, quality: QualityReport | None = None) -> AppliedThresholds:
        if self.pinned is not None:
            return AppliedThresholds(self.pinned, False)
        calibration = self.calibrations.get(channel or PHONE)
        if calibration is None:
            return AppliedThresholds(self.fallback, False)
        low = quality is not None and is_low_quality(quality, self.quality_min_speech_s, self.quality_min_snr_db)
        if low:
            pair = Thresholds(calibration.low_quality_accept_threshold, calibration.low_quality_reject_threshold)
        else:
            pair = Thresholds(calibration.accept_threshold, calibration.reject_threshold)
        return AppliedThresholds(pair, low)


def load_matching_calibrations(settings: Settings, model_version: str) -> dict[str, Calibration]:
    """Calibrations for this model and normalisation; a mismatched file is an error, not ignored."""
    path: Path | None = settings.calibration_file
    if path is None:
        if not BUILTIN_CALIBRATION.is_file():
            return {}
        path = BUILTIN_CALIBRATION
    matching = {
        cal.channel: cal
        for cal in load_calibrations(path)
        if cal.norm == settings.score_norm and cal.model_version == model_version
    }
    if settings.calibration_file is not None and not matching:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"{path} has no calibration for norm {settings.score_norm} and model {model_version}",
        )
    return matching


def build_scorer(settings: Settings, model_version: str) -> Scorer:
    front_end = FrontEndConfig.from_settings(settings).embedding_key
    cohorts = {}
    if settings.score_norm != "none":
        for channel in SERVICE_CHANNELS:
            cohort = find_cohort([settings.cohort_dir, BUILTIN_DIR], model_version, channel, front_end)
            if cohort is None:
                raise VoiceIdError(
                    ErrorCode.CONFIGURATION_ERROR,
                    f"no {channel} cohort for model {model_version} and these VAD settings; run "
                    f"`voiceid cohort build --channel {'g711-ulaw' if channel == PHONE else 'clean'}` "
                    "or set VOICEID_SCORE_NORM=none",
                )
            cohorts[channel] = cohort.embeddings
    calibrations = load_matching_calibrations(settings, model_version)
    population_min = settings.population_min if settings.cohort_source == "population" else 0
    return Scorer(settings.score_norm, settings.score_top_n, cohorts, calibrations, population_min)


def build_policy(settings: Settings, scorer: Scorer) -> DecisionPolicy:
    pinned_fields = {"accept_threshold", "reject_threshold"} & settings.model_fields_set
    pinned = Thresholds(settings.accept_threshold, settings.reject_threshold) if pinned_fields else None
    if pinned is None and settings.score_norm != "none" and not scorer.calibrations:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"scores are {settings.score_norm}-normalised but no calibration sets thresholds for them: "
            "run `voiceid calibrate` and set VOICEID_CALIBRATION_FILE, or pin VOICEID_ACCEPT_THRESHOLD "
            "and VOICEID_REJECT_THRESHOLD",
        )
    return DecisionPolicy(
        calibrations=scorer.calibrations,
        pinned=pinned,
        fallback=Thresholds(settings.accept_threshold, settings.reject_threshold),
        quality_min_speech_s=settings.quality_min_speech_s,
        quality_min_snr_db=settings.quality_min_snr_db,
    )
