"""Cutting a call into the fixed-length windows a countermeasure was trained on (pure).

AASIST sees about 4 s at a time. A short clip is repeated to fill one window (as the model was
trained and evaluated); a longer call is covered by evenly spaced windows, at most `max_windows`
of them so the cost per call is bounded, and the window scores are averaged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def window_count(n_samples: int, window: int, max_windows: int) -> int:
    """How many windows cover `n_samples`: one per whole window length, rounded, 1..max_windows."""
    if window <= 0 or max_windows <= 0:
        raise ValueError("window and max_windows must be positive")
    return int(min(max_windows, max(1, round(n_samples / window))))


def frame_windows(wave: FloatArray, window: int, max_windows: int) -> FloatArray:
    """(k, window) array of windows taken from `wave`; short audio is tiled to one window."""
    samples = np.asarray(wave, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        raise ValueError("no samples")
    if samples.size <= window:
        reps = -(-window // samples.size)
        return np.tile(samples, reps)[:window][None, :].astype(np.float32)
    k = window_count(samples.size, window, max_windows)
    starts = np.linspace(0, samples.size - window, k).round().astype(int)
    return np.stack([samples[s : s + window] for s in starts]).astype(np.float32)
