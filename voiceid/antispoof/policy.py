"""What a presentation-attack flag does to a decision, and the per-channel thresholds (pure).

A flagged call is never ACCEPT: by default it becomes INCONCLUSIVE (the IVR falls back to other
checks, a spoof detector's false alarms on genuine callers stay cheap), or REJECT by setting. A
REJECT stays REJECT. The reason is always added so that the score log shows why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.json_files import read_json_file, write_json_file
from voiceid.antispoof.metrics import bpcer_at, threshold_at_bpcer
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.verify.decision import Decision, Outcome, Reason

DEFAULT_THRESHOLDS = Path(__file__).parent / "data" / "pad_thresholds.json"


class PadAction(StrEnum):
    INCONCLUSIVE = "inconclusive"
    REJECT = "reject"


def apply_pad_flag(outcome: Outcome, flagged: bool, reason: Reason, action: PadAction) -> Outcome:
    """The outcome after a PAD check (countermeasure or replay) that flagged the call or not."""
    if not flagged:
        return outcome
    if outcome.decision not in (Decision.ACCEPT, Decision.REJECT, Decision.INCONCLUSIVE):
        return outcome  # decisions taken without scoring (locked, opted out) are not about the audio
    if action == PadAction.REJECT:
        decision = Decision.REJECT
    else:
        decision = Decision.INCONCLUSIVE if outcome.decision == Decision.ACCEPT else outcome.decision
    return Outcome(decision, (*outcome.reasons, reason))


@dataclass(frozen=True)
class ChannelThreshold:
    threshold: float  # flag when the calibrated CM score is below it
    target_bpcer: float
    bpcer_on_dev: float  # on the genuine files it was fitted on
    n_bonafide: int
    bpcer_held_out: float | None = None  # on genuine speakers kept out of the fit (voiceid.antispoof.calibration)
    n_held_out: int = 0


@dataclass(frozen=True)
class PadThresholds:
    backend_id: str
    channels: dict[str, ChannelThreshold]  # "wideband" | "phone"

    def threshold(self, channel: str) -> float:
        entry = self.channels.get(channel) or self.channels.get("phone")
        if entry is None:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"no PAD threshold for channel {channel!r}")
        return entry.threshold

    def flagged(self, score: float, channel: str) -> bool:
        return score < self.threshold(channel)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend_id": self.backend_id,
            "channels": {
                name: {
                    "threshold": round(c.threshold, 6),
                    "target_bpcer": c.target_bpcer,
                    "bpcer_on_dev": round(c.bpcer_on_dev, 4),
                    "n_bonafide": c.n_bonafide,
                    "bpcer_held_out": c.bpcer_held_out,
                    "n_held_out": c.n_held_out,
                }
                for name, c in sorted(self.channels.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PadThresholds:
        try:
            return cls(
                backend_id=str(data["backend_id"]),
                channels={
                    name: ChannelThreshold(
                        float(c["threshold"]),
                        float(c["target_bpcer"]),
                        float(c["bpcer_on_dev"]),
                        int(c["n_bonafide"]),
                        None if c.get("bpcer_held_out") is None else float(c["bpcer_held_out"]),
                        int(c.get("n_held_out", 0)),
                    )
                    for name, c in data["channels"].items()
                },
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"PAD thresholds file is invalid: {exc}") from exc


def fit_channel_threshold(bonafide_scores: npt.NDArray[np.floating], target_bpcer: float) -> ChannelThreshold:
    """The threshold that flags at most `target_bpcer` of these genuine calls."""
    threshold = threshold_at_bpcer(bonafide_scores, target_bpcer)
    return ChannelThreshold(threshold, target_bpcer, bpcer_at(bonafide_scores, threshold), len(bonafide_scores))


def load_thresholds(path: Path | None = None) -> PadThresholds:
    path = path or DEFAULT_THRESHOLDS
    return PadThresholds.from_dict(read_json_file(path, "PAD thresholds"))


def save_thresholds(thresholds: PadThresholds, path: Path) -> None:
    write_json_file(path, thresholds.to_dict(), indent=2)


def enrolment_doubt(margins: list[float]) -> float | None:
    """The countermeasure's evidence over a whole enrolment: the mean of its files' margins (calibrated
    CM score minus the threshold of the channel each file came through). Below 0 the enrolment as a
    whole looks synthetic; at or above it a flagged file is taken for the false alarm it most likely
    is. A mean, not a sum: files of one session are not independent evidence. None without scores."""
    return None if not margins else float(np.mean(margins))
