"""Voice activity detection with Silero VAD (the model ships inside the `silero-vad` package).

Silero's model is stateful between chunks, so each thread gets its own instance; they are small
(about 2 MB) and loading one takes milliseconds. The same model runs either as TorchScript, one
Python call per 32 ms frame, or as the "sequence" ONNX file silero-vad ships, whole blocks of
frames per ONNX Runtime call: a sixth of the CPU time, the same speech
segments on the dev set (docs/performance.md, tests/models/test_inference_backends.py).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voiceid.config import VadBackend

VAD_RATE = 16_000
_local = threading.local()


# silero-vad loads its TorchScript model with torch.jit.load, which torch 2.14 marks deprecated; the
# FutureWarning is about silero's code, not ours, and was printed by every CLI command. Only that
# message is silenced (a filter, not a catch_warnings block: models load on several threads).
warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 100
    # Left out of the repr, which keys cohorts and cached embeddings: both backends run the same
    # Silero weights and give the same segments (tested on the dev set), like an fp32 export of
    # ECAPA keeps its model version.
    backend: VadBackend = field(default=VadBackend.TORCH, repr=False)


def _model(backend: VadBackend) -> Any:
    """This thread's Silero model for `backend` (a ScriptModule, or silero's sequence ONNX model)."""
    models: dict[VadBackend, Any] | None = getattr(_local, "models", None)
    if models is None:
        models = _local.models = {}
    if backend not in models:
        from silero_vad import load_silero_vad

        # The sequence model is silero's own export of the same network that runs the LSTM
        # over a block of frames inside one ORT call instead of one Python call per 32 ms frame.
        models[backend] = load_silero_vad(sequence=True) if backend is VadBackend.ONNX else load_silero_vad()
    return models[backend]


def speech_segments(samples: npt.NDArray[np.float32], config: VadConfig) -> list[tuple[int, int]]:
    """[start, end) sample indices of speech in 16 kHz audio, padded and merged by Silero."""
    from silero_vad import get_speech_timestamps, get_speech_timestamps_sequence

    if len(samples) == 0:
        return []
    options: dict[str, Any] = {
        "threshold": config.threshold,
        "sampling_rate": VAD_RATE,
        "min_speech_duration_ms": config.min_speech_ms,
        "min_silence_duration_ms": config.min_silence_ms,
        "speech_pad_ms": config.speech_pad_ms,
    }
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    if config.backend is VadBackend.ONNX:
        stamps = get_speech_timestamps_sequence(audio, _model(config.backend), **options)
    else:
        with torch.inference_mode():
            stamps = get_speech_timestamps(torch.from_numpy(audio), _model(config.backend), **options)
    return [(int(s["start"]), int(s["end"])) for s in stamps]


def speech_mask(n_samples: int, segments: list[tuple[int, int]]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(n_samples, dtype=bool)
    for start, end in segments:
        mask[start:end] = True
    return mask


def shorten_pauses(speech: npt.NDArray[np.bool_], max_pause: int) -> npt.NDArray[np.bool_]:
    """Which samples to keep so that no non-speech stretch is longer than `max_pause` samples.

    A long stretch keeps its first and last `max_pause // 2` samples (the natural onset and decay
    around speech) and loses its middle. Leading and trailing silence count as stretches too.
    """
    keep = np.ones(len(speech), dtype=bool)
    padded = np.concatenate([[True], speech, [True]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == -1)  # first sample of each non-speech run
    ends = np.flatnonzero(edges == 1)  # one past its last sample
    half = max_pause // 2
    for start, end in zip(starts, ends, strict=True):
        if end - start > max_pause:
            keep[start + half : end - (max_pause - half)] = False
    return keep
