"""AASIST with its encoder in bfloat16, compiled by Inductor: the countermeasure's default runtime
where the CPU multiplies bf16 natively (AVX512-BF16 / AMX) and the model directory holds the
built-in AASIST checkpoint (issue 18, the CM's cost; docs/antispoof.md, "Cost per call").

Where AASIST's time goes (one thread, one 4-s window, PyTorch eager fp32, idle machine): the sinc
filterbank is about 3 % (20 of 617 ms), the first residual block at full time resolution 61 %, the
next two blocks 24 %; in bf16 with the convolutions on oneDNN the convolutions themselves are a
quarter of the encoder's time and the rest is element-wise work between them (batch norm, SELU,
the residual add, max-pooling), each a pass over a 30 MB activation. Two things therefore make it
fast: the sinc filterbank and the residual encoder run under bf16 autocast (oneDNN's bf16
convolutions), and the whole network is compiled by Inductor with freezing, which folds the batch
norms into the convolutions and fuses the element-wise chains into single loops. The graph
attention head (top-k pooling, softmax at temperature 100) stays in fp32: it is cheap, and it is
where rounding could change which nodes are kept.

Not bit-identical to the fp32 network: on dev_spoof a call's raw score (spread over about +-13)
moves by 0.04 in the median and 0.33 at most, i.e. at most 0.08 nats once calibrated; the EER moves
by +0.41 point (clean) and 0 (G.711), within issue 18's 0.5-point budget, and no dev_spoof file
changes side of its channel's shipped threshold (docs/antispoof.md, "Cost per call");
`tests/antispoof/test_fast_runtime.py` checks the agreement. 1.6-1.9x ONNX Runtime's speed per
window on this machine's CPU. The
detector keeps its version (the fitted back-end and thresholds apply unchanged); evaluation caches
are kept apart (`cache_key`). The reference runtime stays selectable: VOICEID_CM_RUNTIME=manifest.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from voiceid.antispoof.aasist import Aasist, AasistConfig, load_aasist
from voiceid.antispoof.countermeasure import FloatArray, WindowedModel
from voiceid.antispoof.manifest import AASIST_FILE, AASIST_MODEL_CONFIG, AASIST_SHA256, CmManifest, ModelFormat
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import verify_file

log = logging.getLogger(__name__)

CACHE_SUFFIX = "-bf16"


def cpu_has_native_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported())


def builtin_checkpoint(manifest: CmManifest, model_dir: Path) -> tuple[Path, AasistConfig] | None:
    """The AASIST checkpoint behind `manifest`, hash-checked, and its architecture; None where the
    directory holds some other model (an operator's ONNX drop-in keeps its own runtime).

    The shipped directory's manifest names `model.onnx` and records the checkpoint it was exported
    from (`weights_sha256`); the checkpoint lies beside it and is verified here as the manifest's
    file is, so a tampered checkpoint stops the service with MODEL_FILE_CORRUPT."""
    if manifest.format == ModelFormat.AASIST_TORCH:
        # verified_manifest has already checked this file against the manifest's hash
        return model_dir / manifest.file, AasistConfig.from_dict(manifest.model_config)
    if manifest.weights_sha256 != AASIST_SHA256 or not (model_dir / AASIST_FILE).is_file():
        return None
    verify_file(model_dir / AASIST_FILE, AASIST_SHA256)
    return model_dir / AASIST_FILE, AasistConfig.from_dict(AASIST_MODEL_CONFIG)


class _Bf16Network(nn.Module):
    """Front end and encoder under bf16 autocast, graph attention head in fp32."""

    def __init__(self, model: Aasist) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            e = self.model.encode(waveform)
        return self.model.classify(e.float())


class FastAasist(WindowedModel):
    """The built-in AASIST on the bf16 runtime. Compiled once, at load (tens of seconds on a busy
    2-core machine; Inductor's on-disk cache makes later starts quicker), for one window at a time so
    there is one static shape: a call's windows are scored one after another."""

    def __init__(self, manifest: CmManifest, checkpoint: Path, config: AasistConfig, threads: int) -> None:
        super().__init__(manifest)
        self.threads = threads
        if threads > 0:
            torch.set_num_threads(threads)
        weights = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.network = _Bf16Network(load_aasist(weights, config)).eval()
        self._compiled = torch.compile(self.network, dynamic=False)
        import torch._inductor.config as inductor_config

        # Freezing (constant weights: batch norms folded, oneDNN weights pre-packed) halves the time
        # per window. It is set for the process, not patched around each call: the setting is global,
        # so a patch restored by one inference worker while another is calling would make Dynamo
        # recompile an unfrozen graph (measured: calls outside the setting run twice as slow). Nothing
        # else in the service compiles with Inductor, and freezing applies to inference only.
        inductor_config.freezing = True
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Inductor's notices about CUDA being absent
            # Made inside inference mode like every window `_forward` passes: an example made outside
            # it differs in its dispatch keys, which Dynamo guards on, so the first call would compile
            # the network again, on a caller's request.
            example = torch.zeros(1, manifest.window_samples)
            self._compiled(example)  # compile here, not on some caller's first call

    @property
    def cache_key(self) -> str:
        return self.manifest.cache_key + CACHE_SUFFIX

    def _forward(self, windows: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        logits, hidden = [], []
        with torch.inference_mode():
            for window in windows:
                # (1, window) with the strides of the example compiled at load (numpy gives a leading
                # axis of size 1 stride 0, a different guard and so a second compilation)
                out, h = self._compiled(torch.from_numpy(np.ascontiguousarray(window)).reshape(1, -1))
                logits.append(out.numpy().astype(np.float32))
                hidden.append(h.numpy().astype(np.float32))
        return np.concatenate(logits), np.concatenate(hidden)


def load_fast(manifest: CmManifest, model_dir: Path, threads: int, required: bool) -> FastAasist | None:
    """The bf16 runtime for `model_dir`, or None where it cannot run and is not `required`
    (VOICEID_CM_RUNTIME=auto falls back to the manifest's runtime, saying why)."""

    def unavailable(reason: str) -> None:
        if required:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"VOICEID_CM_RUNTIME=torch-bf16: {reason}")
        log.info("countermeasure runtime: %s; using the manifest's runtime", reason)

    source = builtin_checkpoint(manifest, model_dir)
    if source is None:
        unavailable(f"{model_dir} holds no built-in AASIST checkpoint ({AASIST_FILE})")
        return None
    if not cpu_has_native_bf16():
        # emulated bf16 is slower than the fp32 runtime
        unavailable("this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
        return None
    try:
        return FastAasist(manifest, source[0], source[1], threads)
    except VoiceIdError:
        raise
    except Exception as exc:  # Inductor reports a missing compiler and the like in many types
        if required:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"cannot compile the bf16 countermeasure: {exc}") from exc
        log.warning("countermeasure runtime: cannot compile the bf16 network (%s); using the manifest's", exc)
        return None
