"""Per-utterance quality figures (pure functions of samples and the VAD mask)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FRAME_S = 0.02
SNR_CEILING_DB = 80.0  # digital silence between words would otherwise give an infinite SNR
_EPS = 1e-12


@dataclass(frozen=True)
class QualityReport:
    duration_s: float
    net_speech_s: float
    snr_db: float
    clipping_ratio: float
    sample_rate: int
    codec: str
    channel: str  # "phone" (narrowband / G.711) or "wideband"

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def estimate_snr_db(samples: npt.NDArray[np.float32], speech: npt.NDArray[np.bool_], rate: int) -> float:
    """SNR from frame powers: speech frames (VAD) against the non-speech frames.

    When the VAD leaves too few non-speech frames (speech from end to end), the quietest 10 %
    of frames stand in for the noise floor, the usual fallback of energy-based estimators.
    """
    frame = max(1, int(FRAME_S * rate))
    n = len(samples) // frame
    if n == 0:
        return 0.0
    power = np.mean(samples[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    is_speech = speech[: n * frame].reshape(n, frame).mean(axis=1) >= 0.5
    if not is_speech.any():
        return 0.0
    speech_power = float(np.mean(power[is_speech]))
    noise_frames = power[~is_speech]
    # The median, not the mean: frames next to speech carry breath and reverberation tails that
    # the VAD padding leaves outside the speech mask, and they would swamp a mean.
    noise_power = float(np.median(noise_frames)) if len(noise_frames) >= 5 else float(np.percentile(power, 10))
    signal = max(speech_power - noise_power, _EPS)
    return float(min(10.0 * np.log10(signal / max(noise_power, _EPS)), SNR_CEILING_DB))
