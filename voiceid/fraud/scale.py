"""The one score scale of the fraud checks (pure): raw cosine between two embeddings -> a calibrated
log-likelihood ratio (natural log) of "same voice" against "different voices".

Watchlist screening, duplicate identities and linked calls all compare one stored voice with
another. Their raw cosines do not mean the same thing on every channel: on the dev set two phone
calls of one person score lower than two wideband recordings, so one raw threshold (the former
0.65) was strict on the phone and loose on wideband. Each channel's raw-score calibration
(`norm: "none"` entries in `voiceid/fraud/data/scale.json`, score-only logistic fits on the dev set)
maps a cosine to an LLR, and every fraud threshold is stated on that one LLR scale.

Three scales: two sides from the phone, two wideband, and a cross-channel pair (one side wideband,
the other through the phone). Cross-channel pairs have their own calibration because the channel
mismatch itself lowers the cosine of one person's two recordings (on the dev set a wideband
voiceprint and the same person's phone calls score far below either same-channel pair), so the
phone scale would miss almost every cross-channel duplicate. That calibration is fitted by
`bench/fraud_screening.py --fit-cross` into `fraud/data/scale.json`, by the same prior-weighted
logistic regression as `voiceid calibrate`. An unknown channel (rows stored before channels were
recorded) counts as phone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

# The fraud checks' own raw-cosine calibrations (phone, wideband and cross-channel), kept apart from
# the verification calibration: that one is quality-aware and calibrates AS-normalised scores of a
# voiceprint against a probe, while fraud checks compare two stored voices by raw cosine.
CROSS_FILE = Path(__file__).resolve().parent / "data" / "scale.json"
CALIBRATION_FILE = CROSS_FILE
RAW_NORM = "none"  # the calibrations fitted on raw cosine, which is what fraud checks compare


class Channel(StrEnum):
    PHONE = "phone"
    WIDEBAND = "wideband"


class PairScale(StrEnum):
    """Which calibration scores a pair of sides."""

    PHONE = "phone"
    WIDEBAND = "wideband"
    CROSS = "cross"  # one side wideband, the other phone


@dataclass(frozen=True)
class ChannelScale:
    """`llr = slope * cosine + offset` for one channel."""

    slope: float
    offset: float

    def llr(self, cosine: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.slope * np.asarray(cosine, dtype=np.float64) + self.offset

    def cosine_at(self, llr: float) -> float:
        """The raw cosine at which this channel reaches `llr` (for charts and docs)."""
        return (llr - self.offset) / self.slope


def as_channel(value: str | None) -> Channel:
    return Channel.WIDEBAND if value == Channel.WIDEBAND else Channel.PHONE


def pair_channel(a: str | None, b: str | None) -> PairScale:
    """The calibration that scores a comparison of a side from channel `a` with one from `b`."""
    ca, cb = as_channel(a), as_channel(b)
    if ca != cb:
        return PairScale.CROSS
    return PairScale.WIDEBAND if ca == Channel.WIDEBAND else PairScale.PHONE


@dataclass(frozen=True)
class FraudScale:
    scales: Mapping[PairScale, ChannelScale]

    def llr(self, cosine: npt.ArrayLike, a: str | None, b: str | None) -> npt.NDArray[np.float64]:
        """LLRs of cosines between sides from channels `a` and `b` (scalars or arrays)."""
        return self.scales[pair_channel(a, b)].llr(cosine)

    def llrs(self, cosines: npt.ArrayLike, probe: str | None, others: list[str | None]) -> npt.NDArray[np.float64]:
        """One probe from channel `probe` against candidates each with its own channel."""
        c = np.asarray(cosines, dtype=np.float64)
        slopes = np.array([self.scales[pair_channel(probe, o)].slope for o in others], dtype=np.float64)
        offsets = np.array([self.scales[pair_channel(probe, o)].offset for o in others], dtype=np.float64)
        return slopes * c + offsets

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {ch.value: {"slope": s.slope, "offset": s.offset} for ch, s in self.scales.items()}


def scale_from_calibrations(
    entries: list[dict[str, object]], cross: ChannelScale, model_version: str | None = None
) -> FraudScale:
    """The raw-cosine calibration of each channel out of `calibration.json`'s entries (the last
    listed wins when several models are present and `model_version` is not given), and `cross`."""
    found: dict[PairScale, ChannelScale] = {PairScale.CROSS: cross}
    for entry in entries:
        if entry.get("norm") != RAW_NORM or entry.get("channel") not in {c.value for c in Channel}:
            continue
        if model_version is not None and entry.get("model_version") != model_version:
            continue
        slope, offset = entry.get("slope"), entry.get("offset")
        if not isinstance(slope, int | float) or not isinstance(offset, int | float) or slope <= 0:
            raise ValueError(f"raw calibration for {entry.get('channel')} has no usable slope/offset")
        found[PairScale(str(entry["channel"]))] = ChannelScale(float(slope), float(offset))
    missing = [c.value for c in PairScale if c not in found]
    if missing:
        raise ValueError(f"no raw-cosine (norm 'none') calibration for channel(s) {', '.join(missing)}")
    return FraudScale(found)


def load_cross_scale(path: Path = CROSS_FILE) -> ChannelScale:
    data = json.loads(path.read_text())["cross"]
    return ChannelScale(float(data["slope"]), float(data["offset"]))


def load_fraud_scale(
    path: Path = CALIBRATION_FILE, model_version: str | None = None, cross_path: Path = CROSS_FILE
) -> FraudScale:
    data = json.loads(path.read_text())
    return scale_from_calibrations(list(data["calibrations"]), load_cross_scale(cross_path), model_version)
