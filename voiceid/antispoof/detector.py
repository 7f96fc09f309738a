"""Load a countermeasure from its model directory and score 16 kHz audio with it.

Three runtimes behind one interface: the built-in AASIST in PyTorch (fp32, the reference), any ONNX
model an operator drops in (onnxruntime; the shipped `model.onnx` is AASIST exported), and the
built-in AASIST with its encoder in bf16, compiled (`voiceid.antispoof.fast`, the default where the
CPU has native bf16; VOICEID_CM_RUNTIME chooses). All receive the same windows and return one raw
score per window, oriented so that higher means more likely bona fide; the call's raw score is the mean over windows.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceid.antispoof.countermeasure import Countermeasure, FloatArray, WindowedModel
from voiceid.antispoof.manifest import CmManifest, ModelFormat, verified_manifest
from voiceid.config import CmRuntime


class TorchAasist(WindowedModel):
    def __init__(self, manifest: CmManifest, model_dir: Path, threads: int) -> None:
        from voiceid.antispoof.aasist import AasistConfig, load_aasist

        super().__init__(manifest)
        weights = torch.load(model_dir / manifest.file, map_location="cpu", weights_only=True)
        self.model = load_aasist(weights, AasistConfig.from_dict(manifest.model_config))
        self.threads = threads

    def _forward(self, windows: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            logits, hidden = self.model.forward_with_hidden(torch.from_numpy(windows))
        return logits.numpy().astype(np.float32), hidden.numpy().astype(np.float32)


class OnnxModel(WindowedModel):
    """An exported model: input (k, window) float32 waveform; first output the scores or logits,
    an optional second output a (k, D) embedding."""

    def __init__(self, manifest: CmManifest, model_dir: Path, threads: int) -> None:
        import onnxruntime as ort

        super().__init__(manifest)
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / manifest.file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.n_outputs = len(self.session.get_outputs())

    def _forward(self, windows: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        # No lock: ORT's Run is thread-safe, and with one intra-op thread each run computes on its
        # caller's thread, so the inference pool's workers score calls side by side within their
        # thread budget (a lock here made the countermeasure a single-file queue across workers).
        outputs: list[Any] = self.session.run(None, {self.input_name: windows})
        hidden = np.asarray(outputs[1], dtype=np.float32) if self.n_outputs > 1 else None
        return np.asarray(outputs[0], dtype=np.float32), hidden


def load_countermeasure(
    model_dir: Path, threads: int = 1, max_windows: int | None = None, runtime: CmRuntime = CmRuntime.MANIFEST
) -> Countermeasure:
    """The detector described by `model_dir/manifest.json`, its file verified by hash first;
    `max_windows` overrides the manifest's (a service setting: it bounds the cost per call).
    `runtime` (VOICEID_CM_RUNTIME): `manifest` runs the file the manifest names; `torch-bf16` the
    built-in AASIST in bf16 (an error where it cannot run); `auto` the latter where it can."""
    manifest = verified_manifest(model_dir)
    if max_windows is not None:
        manifest = replace(manifest, max_windows=max_windows)
    if runtime != CmRuntime.MANIFEST:
        from voiceid.antispoof.fast import load_fast

        fast = load_fast(manifest, model_dir, threads, required=runtime == CmRuntime.TORCH_BF16)
        if fast is not None:
            return fast
    if manifest.format == ModelFormat.AASIST_TORCH:
        return TorchAasist(manifest, model_dir, threads)
    return OnnxModel(manifest, model_dir, threads)


@lru_cache(maxsize=4)
def shared_countermeasure(
    model_dir: Path, threads: int = 1, max_windows: int | None = None, runtime: CmRuntime = CmRuntime.MANIFEST
) -> Countermeasure:
    """One loaded detector per process and directory, like the embedding model."""
    return load_countermeasure(model_dir, threads, max_windows, runtime)
