"""The embedding network in bfloat16 on oneDNN: the fastest backend measured on this CPU.

Zen 4 (and Intel from Cooper Lake / Sapphire Rapids) multiplies bf16 natively (AVX512-BF16),
twice the fp32 rate. The network is traced once under CPU autocast and frozen, so the bf16 casts,
the batch-norm folding and oneDNN's fused convolutions are fixed in one TorchScript graph instead
of being re-decided on every call: 2.2x the fp32 eager network on one thread, embeddings within
cosine 0.99997 of it on dev speech (docs/performance.md, tests/models/test_inference_backends.py).

Not numerically equivalent to the checkpoint in fp32, so its vectors carry a derived model
version: voiceprints, cohorts and calibrations of the fp32 model are never mixed with them.
"""

from __future__ import annotations

import warnings

import torch

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.embedder import Embedder
from voiceid.models.files import VerifiedModel

_TRACE_FRAMES = 300
FEATURE_DIM = 80


def bf16_version(source_version: str) -> str:
    return f"{source_version}-bf16"


def cpu_has_native_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported())


class Bf16Embedder(Embedder):
    def __init__(self, model: VerifiedModel, threads: int = 0) -> None:
        if not cpu_has_native_bf16():
            # Emulated bf16 is slower than fp32: refusing beats silently halving throughput.
            raise VoiceIdError(
                ErrorCode.CONFIGURATION_ERROR,
                "VOICEID_INFERENCE_BACKEND=torch-bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                "use torch or onnx on this machine",
            )
        super().__init__(model, threads=threads)
        network = self._modules.pop("embedding_model")
        example = (torch.zeros(1, _TRACE_FRAMES, FEATURE_DIM), torch.ones(1))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings():
            # The tracer warns about shape-dependent Python in SpeechBrain's pooling; the traced
            # graph is checked against eager on other lengths and padded batches in the tests.
            warnings.simplefilter("ignore")
            self._traced = torch.jit.freeze(torch.jit.trace(network.eval(), example))  # type: ignore[no-untyped-call]
        self.model_version = bf16_version(model.model_version)

    @torch.inference_mode()
    def _network(self, feats: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._traced(feats, rel_lens).squeeze(1).to(torch.float32)
        return out
