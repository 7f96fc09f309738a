"""A simulated replay attack (pure): a recording played from a loudspeaker into a room, picked up by a
phone and carried over a G.711 line, with background noise. Used by the tests and bench/replay.py;
dev_spoof holds no real replays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, fftconvolve, sosfilt

from voiceid.audio import g711
from voiceid.audio.resample import resample

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ReplayChannel:
    speaker_band_hz: tuple[float, float] = (250.0, 5000.0)  # a small loudspeaker's useful band
    rt60_s: float = 0.4  # room reverberation time
    direct_to_reverb_db: float = 3.0
    snr_db: float = 20.0
    law: str = "ulaw"
    gain: float = 0.7


def room_impulse_response(rate: int, rt60_s: float, direct_to_reverb_db: float, rng: np.random.Generator) -> FloatArray:
    """A direct path plus an exponentially decaying noise tail (a statistical room model)."""
    length = int(rate * rt60_s * 1.2)
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    tail[: int(0.003 * rate)] = 0.0  # first reflections arrive a few ms after the direct sound
    tail *= 10 ** (-direct_to_reverb_db / 20) / np.sqrt(np.sum(tail**2) + 1e-12)
    tail[0] += 1.0
    return tail.astype(np.float32)


def simulate_replay(wave: FloatArray, rate: int, channel: ReplayChannel, rng: np.random.Generator) -> FloatArray:
    """`wave` as it reaches the service after being replayed; returned at 8 kHz G.711-decoded."""
    x = np.asarray(wave, dtype=np.float64)
    lo, hi = channel.speaker_band_hz
    sos = butter(4, [lo, min(hi, rate / 2 * 0.95)], btype="bandpass", fs=rate, output="sos")
    x = sosfilt(sos, x)
    x = fftconvolve(x, room_impulse_response(rate, channel.rt60_s, channel.direct_to_reverb_db, rng))[: x.size]
    power = np.mean(x**2) + 1e-12
    x = x + rng.standard_normal(x.size) * np.sqrt(power / 10 ** (channel.snr_db / 10))
    x = channel.gain * x / (np.max(np.abs(x)) + 1e-9)
    narrow = resample(x.astype(np.float32), rate, 8000)
    return g711.decode(g711.encode(narrow, channel.law), channel.law)
