"""Export the built-in AASIST to ONNX with a manifest: the plug-in path, exercised end to end.

    voiceid models export-cm --out /srv/voiceid/models/aasist-onnx

The result is a model directory an operator could have received from elsewhere: `model.onnx`
(input `waveform` (k, window) float32; outputs `logits` (k, 2) [spoof, bona fide] and `embedding`
(k, 160)) and a `manifest.json` with format `onnx`. Pointing VOICEID_CM_MODEL_DIR at it makes the
service use onnxruntime instead of PyTorch, with no code change.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from voiceid.antispoof.aasist import Aasist
from voiceid.antispoof.detector import TorchAasist, load_countermeasure
from voiceid.antispoof.manifest import CmManifest, ModelFormat, write_manifest
from voiceid.models.files import sha256_of

ONNX_FILE = "model.onnx"


class _WithHidden(nn.Module):
    def __init__(self, model: Aasist) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_hidden(waveform)


def export_onnx(source_dir: Path, out_dir: Path) -> CmManifest:
    """Write `out_dir/model.onnx` and its manifest from the AASIST in `source_dir` (it may be the same
    directory: the manifest then points at the ONNX file, the checkpoint stays beside it)."""
    cm = load_countermeasure(source_dir)
    if not isinstance(cm, TorchAasist):
        raise ValueError(f"{source_dir} does not hold a PyTorch AASIST to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ONNX_FILE
    example = torch.zeros(2, cm.manifest.window_samples)
    # The TorchScript exporter gives one self-contained file (no external data) with a dynamic
    # batch axis; the node counts inside depend only on the fixed window length.
    torch.onnx.export(
        _WithHidden(cm.model),
        (example,),
        str(path),
        input_names=["waveform"],
        output_names=["logits", "embedding"],
        dynamic_axes={"waveform": {0: "windows"}, "logits": {0: "windows"}, "embedding": {0: "windows"}},
        opset_version=17,
        dynamo=False,
    )
    manifest = replace(
        cm.manifest,
        format=ModelFormat.ONNX,
        file=ONNX_FILE,
        sha256=sha256_of(path),
        model_config={},
        weights_sha256=cm.manifest.weights_sha256 or cm.manifest.sha256,
    )
    write_manifest(out_dir, manifest)
    return manifest
