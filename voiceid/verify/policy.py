"""Which thresholds apply to a call: one pair per channel, stated in error rates.

Operators set a target false-match rate for ACCEPT and a target false-non-match rate for REJECT
(VOICEID_TARGET_FMR / VOICEID_TARGET_FNMR); the channel's quality-aware calibration turns them
into one pair of thresholds on the calibrated LLR, so the pair an IVR sees is the same on every
call of a channel, whatever its length. An operator may still pin both thresholds
(VOICEID_ACCEPT_THRESHOLD / VOICEID_REJECT_THRESHOLD) on the LLR scale, or on the raw cosine
scale when the service runs without normalisation and calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from voiceid.audio.frontend import FrontEndConfig
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.verify.calibration import Calibration, load_calibrations, select_calibration
from voiceid.verify.cohort import BUILTIN_DIR, PHONE, SERVICE_CHANNELS, find_cohort
from voiceid.verify.decision import Thresholds
from voiceid.verify.scorer import Scorer

BUILTIN_CALIBRATION = BUILTIN_DIR / "calibration.json"


class Scale(StrEnum):
    """What the thresholds of a decision are on."""

    LLR = "llr"  # calibrated natural-log likelihood ratio
    COSINE = "cosine"  # raw cosine (no calibration: VOICEID_SCORE_NORM=none without a calibration)


@dataclass(frozen=True)
class AppliedThresholds:
    thresholds: Thresholds
    scale: Scale


@dataclass(frozen=True)
class DecisionPolicy:
    by_channel: dict[str, Thresholds]  # from the calibrations and the target error rates (fullest regime)
    pinned: Thresholds | None  # operator-set thresholds override the calibration
    fallback: Thresholds  # with no calibration and no pin (raw cosine, norm "none")
    target_fmr: float
    target_fnmr: float
    # calibration id -> its pair: each normalisation regime's calibration has thresholds of its own
    by_calibration: dict[str, Thresholds] = field(default_factory=dict)
    # The same for a retry of an INCONCLUSIVE call (?retry_of=): the FMR target times `retry_fmr_factor`.
    retry_by_channel: dict[str, Thresholds] = field(default_factory=dict)
    retry_by_calibration: dict[str, Thresholds] = field(default_factory=dict)
    retry_fmr_factor: float = 1.0

    def thresholds(
        self, channel: str | None, calibration_id: str | None = None, retry: bool = False
    ) -> AppliedThresholds:
        """The pair a call of this channel is decided with; `calibration_id` names the regime's
        calibration that produced its LLR (the channel's fullest regime when absent). `retry`: the
        call is the one voice retry of an INCONCLUSIVE one, decided at the stricter false-match rate."""
        key, channel = calibration_id or "", channel or PHONE
        pair = self.by_calibration.get(key) or self.by_channel.get(channel)
        scale = Scale.LLR if pair is not None else Scale.COSINE
        if self.pinned is not None:
            pinned = stricter(self.pinned, self.retry_fmr_factor) if retry and scale is Scale.LLR else self.pinned
            return AppliedThresholds(pinned, scale)
        if retry and pair is not None:
            found = self.retry_by_calibration.get(key) or self.retry_by_channel.get(channel)
            pair = found or stricter(pair, self.retry_fmr_factor)
        # Raw cosine thresholds without a calibration have no false-match rate to tighten: the same pair.
        return AppliedThresholds(pair or self.fallback, scale)


def stricter(pair: Thresholds, factor: float) -> Thresholds:
    """`pair` for a false-match rate `factor` times the one it was set for, where no calibration can
    show that rate: a calibrated LLR has P(LLR >= t | different speakers) <= exp(-t) (its non-target
    mean of exp(LLR) is 1), so raising the accept threshold by ln(1 / factor) scales that bound by `factor`."""
    return Thresholds(round(pair.accept + math.log(1.0 / factor), 2), pair.reject)


def retry_pair(calibration: Calibration, target_fmr: float, target_fnmr: float, factor: float) -> Thresholds:
    """The pair of a retry: the calibration's accept threshold for `target_fmr * factor` (never below
    the first try's), the same reject threshold; where no band has the non-target trials to show the
    stricter rate, the first try's pair made stricter by the LLR bound (`stricter`)."""
    first = _pair(calibration, target_fmr, target_fnmr)
    try:
        accept, _ = calibration.thresholds(target_fmr * factor, target_fnmr)
    except ValueError:
        return stricter(first, factor)
    return Thresholds(max(round(accept, 2), first.accept), first.reject)


def _pair(calibration: Calibration, target_fmr: float, target_fnmr: float) -> Thresholds:
    try:
        accept, reject = calibration.thresholds(target_fmr, target_fnmr)
    except ValueError as exc:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, str(exc)) from exc
    return Thresholds(round(accept, 2), min(round(reject, 2), round(accept, 2)))


def _regimes(calibrations: Calibration | Sequence[Calibration]) -> list[Calibration]:
    return [calibrations] if isinstance(calibrations, Calibration) else list(calibrations)


PairOf = Callable[[Calibration], Thresholds]


def _by_channel(
    calibrations: Mapping[str, Calibration | Sequence[Calibration]], pair_of: PairOf
) -> dict[str, Thresholds]:
    return {channel: pair_of(select_calibration(_regimes(c), None)) for channel, c in calibrations.items()}


def _by_calibration(
    calibrations: Mapping[str, Calibration | Sequence[Calibration]], pair_of: PairOf
) -> dict[str, Thresholds]:
    return {cal.calibration_id: pair_of(cal) for regimes in calibrations.values() for cal in _regimes(regimes)}


def policy_from_calibrations(
    calibrations: Mapping[str, Calibration | Sequence[Calibration]], target_fmr: float, target_fnmr: float
) -> dict[str, Thresholds]:
    """channel -> the pair of its fullest normalisation regime (the most enrolled voiceprints)."""
    return _by_channel(calibrations, lambda cal: _pair(cal, target_fmr, target_fnmr))


def thresholds_by_calibration(
    calibrations: Mapping[str, Calibration | Sequence[Calibration]], target_fmr: float, target_fnmr: float
) -> dict[str, Thresholds]:
    """calibration id -> pair, for every regime of every channel."""
    return _by_calibration(calibrations, lambda cal: _pair(cal, target_fmr, target_fnmr))


def retry_thresholds(
    calibrations: Mapping[str, Calibration | Sequence[Calibration]],
    target_fmr: float,
    target_fnmr: float,
    factor: float,
) -> tuple[dict[str, Thresholds], dict[str, Thresholds]]:
    """The same two tables (channel -> pair of its fullest regime, calibration id -> pair) for retries."""

    def pair_of(cal: Calibration) -> Thresholds:
        return retry_pair(cal, target_fmr, target_fnmr, factor)

    return _by_channel(calibrations, pair_of), _by_calibration(calibrations, pair_of)


def channel_regimes(calibrations: Sequence[Calibration], norm: str) -> list[Calibration]:
    """One channel's regimes for the service's normalisation: its `norm` calibrations, and below the
    smallest population they start at, the raw-cosine calibration (the regime of a deployment whose
    population is still too small for normalisation to pay) and the centred-cosine ones (from the
    population where the operator's own mean pays, `verify.normalisation.centre_scores`)."""
    normed = [c for c in calibrations if c.norm == norm]
    if norm == "none":
        return normed
    start = min((c.population_min for c in normed), default=None)
    below = [c for c in calibrations if c.norm in ("none", "centre") and (start is None or c.population_min < start)]
    return sorted(below + normed, key=lambda c: c.population_min) if normed else []


def load_matching_calibrations(settings: Settings, model_version: str) -> dict[str, list[Calibration]]:
    """Calibrations for this model and normalisation; a mismatched file is an error, not ignored."""
    path: Path | None = settings.calibration_file
    if path is None:
        if not BUILTIN_CALIBRATION.is_file() or settings.score_norm == "none":
            # The shipped raw-cosine calibrations are the small-population regime of a normalising
            # service; VOICEID_SCORE_NORM=none keeps its documented meaning (raw cosine, thresholds on
            # the cosine scale) unless VOICEID_CALIBRATION_FILE names a calibration for it.
            return {}
        path = BUILTIN_CALIBRATION
    try:
        calibrations = load_calibrations(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"{path}: {exc}") from exc
    by_channel: dict[str, list[Calibration]] = {}
    for cal in calibrations:
        if cal.model_version == model_version:
            by_channel.setdefault(cal.channel, []).append(cal)
    # `channel_regimes` alone says which normalisations serve this service's regimes.
    matching = {channel: channel_regimes(cals, settings.score_norm) for channel, cals in by_channel.items()}
    matching = {channel: regimes for channel, regimes in matching.items() if regimes}
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
    size = settings.cohort_size if settings.cohort_source == "population" else 0
    # cohort_size 0 would leave no cohort at all: "builtin" means the shipped cohort alone.
    return Scorer(settings.score_norm, settings.score_top_n, cohorts, calibrations, size or 1_000_000)


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
    retry_by_channel, retry_by_calibration = retry_thresholds(
        scorer.calibrations, settings.target_fmr, settings.target_fnmr, settings.retry_fmr_factor
    )
    return DecisionPolicy(
        by_channel=policy_from_calibrations(scorer.calibrations, settings.target_fmr, settings.target_fnmr),
        by_calibration=thresholds_by_calibration(scorer.calibrations, settings.target_fmr, settings.target_fnmr),
        pinned=pinned,
        fallback=Thresholds(settings.accept_threshold, settings.reject_threshold),
        target_fmr=settings.target_fmr,
        target_fnmr=settings.target_fnmr,
        retry_by_channel=retry_by_channel,
        retry_by_calibration=retry_by_calibration,
        retry_fmr_factor=settings.retry_fmr_factor,
    )
