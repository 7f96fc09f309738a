"""Synthetic audio for tests and benches: a pure tone and its bytes in any container soundfile writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def crop_wav(path: Path, seconds: float) -> bytes:
    """The first `seconds` of an audio file, as WAV bytes."""
    samples, rate = sf.read(path, dtype="float32")
    return wav_bytes(samples[: int(seconds * rate)], rate)
