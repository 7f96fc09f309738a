"""What every countermeasure runtime shares (pure of any back-end): the output of one call, the
Protocol the service calls, and resampling + windowing before a back-end's forward pass.
`detector.py` (PyTorch fp32 / ONNX Runtime) and `fast.py` (bf16, compiled) build on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.manifest import CmManifest, OutputKind, ScoreDirection
from voiceid.antispoof.windows import frame_windows
from voiceid.audio.resample import resample
from voiceid.errors import ErrorCode, VoiceIdError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class CmOutput:
    """Raw countermeasure output for one call (before the back-end's calibration)."""

    score: float  # mean of the window scores; higher = more likely bona fide
    window_scores: tuple[float, ...]
    embedding: FloatArray | None  # mean last-hidden-layer vector over windows, where the model exposes one
    version: str


def window_scores_from_output(output: FloatArray, manifest: CmManifest) -> FloatArray:
    """(k, 2) logits or (k,) / (k, 1) scores -> (k,) scores, higher = bona fide (pure)."""
    out = np.asarray(output, dtype=np.float64)
    if manifest.output == OutputKind.LOGITS_SPOOF_BONAFIDE:
        if out.ndim != 2 or out.shape[1] != 2:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"model returned shape {out.shape}, expected (k, 2)")
        scores = out[:, 1] - out[:, 0]  # log-odds bona fide vs spoof under the network's softmax
    else:
        scores = out.reshape(out.shape[0], -1)[:, 0]
    if manifest.score_direction == ScoreDirection.HIGHER_SPOOF:
        scores = -scores
    return scores.astype(np.float32)


class Countermeasure(Protocol):
    manifest: CmManifest

    @property
    def version(self) -> str: ...

    @property
    def cache_key(self) -> str: ...

    def score(self, wave: FloatArray, sample_rate: int) -> CmOutput: ...


class WindowedModel:
    """Shared part: resampling and windowing, then a back-end-specific forward pass."""

    def __init__(self, manifest: CmManifest) -> None:
        self.manifest = manifest

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def cache_key(self) -> str:
        """Names evaluation caches of raw outputs: a runtime that is not numerically equivalent to the
        manifest's file (bf16) adds its own suffix."""
        return self.manifest.cache_key

    def _forward(self, windows: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        raise NotImplementedError

    def score(self, wave: FloatArray, sample_rate: int) -> CmOutput:
        m = self.manifest
        samples = resample(np.asarray(wave, dtype=np.float32), sample_rate, m.sample_rate)
        windows = frame_windows(samples, m.window_samples, m.max_windows)
        output, hidden = self._forward(windows)
        scores = window_scores_from_output(output, m)
        embedding = None if hidden is None else hidden.mean(axis=0).astype(np.float32)
        return CmOutput(float(scores.mean()), tuple(float(s) for s in scores), embedding, m.version)
