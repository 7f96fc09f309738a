"""ECAPA-TDNN speaker embeddings from verified local files.

The network is built from the model's own `hyperparams.yaml` (so the architecture is upstream's,
not a copy of it) and its weights are loaded straight into the modules with `load_state_dict`.
We bypass SpeechBrain's Pretrainer on purpose: it would resolve `pretrained_path` against a hub
and write symlinks into a save directory. The forward pass is the same three steps as
`EncoderClassifier.encode_batch` (Fbank -> sentence mean normalisation -> ECAPA).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voiceid.models.files import REQUIRED_FILES, VerifiedModel, verify_model_dir

SAMPLE_RATE = 16_000
EMBEDDING_DIM = 192

FloatArray = npt.NDArray[np.float32]


def load_modules(model_dir: Path) -> dict[str, torch.nn.Module]:
    from hyperpyyaml import load_hyperpyyaml

    with (model_dir / "hyperparams.yaml").open() as handle:
        # The override keeps every path local: no hub id survives into the loaded config.
        hparams: dict[str, Any] = load_hyperpyyaml(handle, overrides={"pretrained_path": str(model_dir)})
    modules = {
        "compute_features": hparams["compute_features"],
        "mean_var_norm": hparams["mean_var_norm"],
        "embedding_model": hparams["embedding_model"],
    }
    state = torch.load(model_dir / "embedding_model.ckpt", map_location="cpu", weights_only=True)
    modules["embedding_model"].load_state_dict(state, strict=True)
    for module in modules.values():
        module.eval()
    return modules


class Embedder:
    """Turns 16 kHz mono float waveforms into L2-normalised 192-d float32 vectors.

    Thread-safe for concurrent `embed` calls: the modules are in eval mode and carry no state
    between forward passes.
    """

    def __init__(self, model: VerifiedModel, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        self.model_version = model.model_version
        self.model_dir = model.directory
        self._modules = load_modules(model.directory)

    @classmethod
    def from_dir(cls, model_dir: Path, threads: int = 0) -> Embedder:
        return cls(verify_model_dir(model_dir, REQUIRED_FILES), threads=threads)

    @torch.inference_mode()
    def _features(self, wavs: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
        """Fbank + sentence mean normalisation: (batch, samples) -> (batch, frames, 80)."""
        feats = self._modules["compute_features"](wavs)
        out: torch.Tensor = self._modules["mean_var_norm"](feats, rel_lens)
        return out

    def features(self, wave: npt.NDArray[np.floating]) -> FloatArray:
        """One utterance's network input, (1, frames, 80): what the ONNX export is calibrated on."""
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
        out: FloatArray = self._features(tensor, torch.ones(1)).numpy()
        return out

    @torch.inference_mode()
    def _network(self, feats: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._modules["embedding_model"](feats, rel_lens).squeeze(1)
        return out

    def _forward(self, wavs: torch.Tensor, rel_lens: torch.Tensor) -> FloatArray:
        emb = self._network(self._features(wavs, rel_lens), rel_lens)
        emb = torch.nn.functional.normalize(emb, dim=-1)
        out: FloatArray = emb.to(torch.float32).cpu().numpy()
        return out

    def embed(self, wave: npt.NDArray[np.floating]) -> FloatArray:
        """One utterance -> one (192,) vector."""
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
        vector: FloatArray = self._forward(tensor, torch.ones(1))[0]
        return vector

    def embed_many(self, waves: Sequence[npt.NDArray[np.floating]], max_batch_seconds: float = 120.0) -> FloatArray:
        """Many utterances -> (n, 192), batched by similar length to keep padding small.

        Batches hold at most `max_batch_seconds` of padded audio; each utterance passes its
        relative length so padding is excluded from normalisation and pooling.
        """
        out = np.zeros((len(waves), EMBEDDING_DIM), dtype=np.float32)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        budget = int(max_batch_seconds * SAMPLE_RATE)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and len(waves[order[end]]) * (end - start + 1) <= budget:
                end += 1
            idx = order[start:end]
            longest = len(waves[idx[-1]])
            batch = torch.zeros(len(idx), longest)
            for row, i in enumerate(idx):
                batch[row, : len(waves[i])] = torch.from_numpy(np.asarray(waves[i], dtype=np.float32))
            rel = torch.tensor([len(waves[i]) / longest for i in idx], dtype=torch.float32)
            out[idx] = self._forward(batch, rel)
            start = end
        return out
