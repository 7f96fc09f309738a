"""Sample-rate conversion to the model's 16 kHz (torchaudio's windowed-sinc resampler)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torchaudio.functional as AF

MODEL_RATE = 16_000


def resample(samples: npt.NDArray[np.floating], orig_rate: int, new_rate: int = MODEL_RATE) -> npt.NDArray[np.float32]:
    if orig_rate == new_rate:
        return np.asarray(samples, dtype=np.float32)
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        out: npt.NDArray[np.float32] = AF.resample(tensor, orig_rate, new_rate).numpy()
        return out
