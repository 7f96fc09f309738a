"""Self-calibration: the shipped calibration corrected on the operator's own population (pure).

The shipped calibration was fitted on the dev speakers. A deployment's callers differ (accent, age,
handsets, lines), and with them where its impostor scores fall. Non-target evidence is free in
production: every enrolled voiceprint against the enrolment audio of *other* enrolled identities is a
trial of two different people. From those trials this module derives, per channel and per net-speech
band of the probe, a shift in nats subtracted from the calibrated LLR, so that the accept threshold
(unchanged, as the IVR sees it) meets the FMR target *on this population*:

- with enough pairs of people in a band to read its tail (`tail_errors` impostor pairs expected above
  the threshold), the shift moves the threshold onto the population's own (1 - FMR) quantile;
- with fewer, the channel is shifted by how much higher its impostors score on average than the
  calibration's did (band by band, pooled), shrunk toward the shipped calibration by the evidence,
  n / (n + n0) pairs: a mean is stable on tens of pairs where a 0.1 % tail needs thousands. This path
  only ever raises the threshold.

Manipulation. Raising the threshold only makes ACCEPT harder, so the risk is an attacker who enrols
many identities whose voices score low against everyone, diluting the impostor tail so the shift turns
negative and makes ACCEPT easier. Three guards: the shift never lowers the threshold by more than
`max_lower` nats (a floor: with calibrated LLRs the impostor accept rate can at most grow by about
exp(max_lower)); lowering at all needs `min_speakers_to_lower` distinct identities and a tail read on
enough pairs, never the mean estimate; every identity contributes at most `probes_per_speaker`
utterances, so no single enrolment weighs more than another.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration, band_labels, band_of

FORMAT = 1


class ShiftMethod(StrEnum):
    TAIL = "tail"  # the band's own (1 - FMR) quantile, read on enough pairs of people
    MOMENTS = "moments"  # the channel's mean non-target LLR against the calibration's (raises only)
    NONE = "none"  # too little evidence: the shipped calibration as it is


@dataclass(frozen=True)
class SelfCalLimits:
    """Bounds of the fit (settings `VOICEID_SELFCAL_*`)."""

    min_trials: int = 30  # fewer non-target trials in a band: no estimate from it
    tail_errors: float = 10.0  # pairs' worth of impostors expected above the threshold to read a tail
    prior_pairs: int = 200  # n0 of the blend n / (n + n0) of the mean estimate with the shipped calibration
    max_lower: float = 0.5  # nats: the floor under the shipped accept threshold
    max_raise: float = 4.0  # nats: a raise beyond this means something is wrong, not a population
    min_speakers_to_lower: int = 30  # distinct identities before any lowering


@dataclass(frozen=True)
class BandShift:
    band: str
    n_trials: int
    n_speakers: int
    method: ShiftMethod
    estimate: float  # nats, before blending and bounds
    shift: float  # nats subtracted from this band's LLRs


@dataclass(frozen=True)
class ChannelShift:
    """The correction of one channel's regime calibration (`calibration_id`) on this population."""

    channel: str
    calibration_id: str
    accept_threshold: float
    bands: list[BandShift]

    def shift_for(self, probe_speech_s: float) -> float:
        return self.bands[int(band_of(probe_speech_s))].shift

    def shifts_for(self, probe_speech_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        table = np.array([b.shift for b in self.bands], dtype=np.float64)
        return table[band_of(probe_speech_s)]


@dataclass(frozen=True)
class SelfCalibration:
    """Every channel's correction; `version` is a content hash (reproducible: same trials, same hash)."""

    channels: list[ChannelShift]
    target_fmr: float
    n_speakers: int
    format: int = FORMAT

    @property
    def version(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def for_calibration(self, calibration_id: str | None) -> ChannelShift | None:
        """The correction of exactly this regime's calibration: a correction fitted in another regime
        does not apply (the shipped calibration of the regime stands until the next fit)."""
        return next((c for c in self.channels if c.calibration_id == calibration_id), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfCalibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"self-calibration format {data.get('format')} is not {FORMAT}")
        channels = [
            ChannelShift(
                channel=c["channel"],
                calibration_id=c["calibration_id"],
                accept_threshold=c["accept_threshold"],
                bands=[BandShift(**{**b, "method": ShiftMethod(b["method"])}) for b in c["bands"]],
            )
            for c in data["channels"]
        ]
        return cls(channels, data["target_fmr"], data["n_speakers"])


def _tail_threshold(values: npt.NDArray[np.float64], fmr: float) -> float:
    """The lowest threshold accepting at most `fmr` of `values` (the rule of BandTail.accept_threshold)."""
    ordered = np.sort(values)[::-1]
    return float(ordered[math.floor(fmr * len(values))])


def fit_channel_shift(
    nontarget_llr: npt.ArrayLike,
    probe_speech_s: npt.ArrayLike,
    probe_owner: npt.ArrayLike,
    claimed: npt.ArrayLike,
    calibration: Calibration,
    accept_threshold: float,
    target_fmr: float,
    limits: SelfCalLimits,
) -> ChannelShift:
    """The per-band shift of one channel from its population's non-target LLRs (under `calibration`,
    before any shift), each with the net speech of its probe, the identity whose audio it is and the
    identity it was scored against.

    Trials of one pair of people are not independent (a pair of similar voices puts all of its trials
    in the tail together), so the evidence is counted in distinct pairs: a band's own tail is read only
    when `tail_errors` pairs' worth of impostors are expected above the threshold; otherwise the channel
    takes one shift from the mean of its non-target LLRs against the calibration's, band by band, which
    tens of pairs already estimate well."""
    llr = np.asarray(nontarget_llr, dtype=np.float64)
    owner = np.asarray(probe_owner)
    other = np.asarray(claimed)
    bands = band_of(np.asarray(probe_speech_s, dtype=np.float64))
    out: list[BandShift] = []
    mean_gaps, mean_weights, all_pairs = [], [], set()
    for k, label in enumerate(band_labels()):
        in_band = bands == k
        values = llr[in_band]
        pairs = set(zip(owner[in_band].tolist(), other[in_band].tolist(), strict=True))
        all_pairs |= pairs
        speakers = len(set(owner[in_band].tolist()))
        band = calibration.bands[k] if k < len(calibration.bands) else None
        method, estimate, shift = ShiftMethod.NONE, 0.0, 0.0
        if len(values) >= limits.min_trials and len(pairs) * target_fmr >= limits.tail_errors:
            method, estimate = ShiftMethod.TAIL, _tail_threshold(values, target_fmr) - accept_threshold
            shift = estimate
            if shift < 0 and speakers < limits.min_speakers_to_lower:
                shift = 0.0  # lowering needs a tail read on many identities
        elif len(values) >= limits.min_trials and band is not None and band.nontarget_mean is not None:
            mean_gaps.append(float(values.mean()) - band.nontarget_mean)
            mean_weights.append(len(pairs))
        out.append(BandShift(label, len(values), speakers, method, round(estimate, 4), round(shift, 4)))
    if mean_gaps:
        # Impostors of this population score higher (or lower) than the calibration's by this much on
        # average; only a raise is taken from it, shrunk toward the shipped calibration by the evidence.
        n_pairs = len(all_pairs)
        gap = float(np.average(mean_gaps, weights=mean_weights)) * n_pairs / (n_pairs + limits.prior_pairs)
        out = [
            b
            if b.method is ShiftMethod.TAIL
            else BandShift(
                b.band, b.n_trials, b.n_speakers, ShiftMethod.MOMENTS, round(gap, 4), round(max(gap, 0.0), 4)
            )
            for b in out
        ]
    out = [
        BandShift(
            b.band,
            b.n_trials,
            b.n_speakers,
            b.method,
            b.estimate,
            round(float(min(max(b.shift, -limits.max_lower), limits.max_raise)), 4),
        )
        for b in out
    ]
    return ChannelShift(calibration.channel, calibration.calibration_id, accept_threshold, out)


def cap_per_owner(owners: list[str], per_owner: int, seed: str = "") -> npt.NDArray[np.int64]:
    """Indices keeping at most `per_owner` items per identity, chosen by a stable hash (so a re-run on
    the same population picks the same probes: the fit is reproducible)."""
    order = sorted(range(len(owners)), key=lambda i: hashlib.sha256(f"{seed}{owners[i]}:{i}".encode()).digest())
    kept: dict[str, int] = {}
    keep = []
    for i in order:
        if kept.get(owners[i], 0) < per_owner:
            kept[owners[i]] = kept.get(owners[i], 0) + 1
            keep.append(i)
    return np.array(sorted(keep), dtype=np.int64)
