"""Export the ECAPA network to ONNX on the user's machine, from the hash-verified checkpoint.

Nothing here is downloaded: the graph is traced from the upstream modules (built from upstream's
`hyperparams.yaml`, weights from the pinned `embedding_model.ckpt`) and written next to them under
`<model_dir>/onnx/`. The export starts after the feature front end (Fbank + sentence mean
normalisation stay in torch): `torch.stft` is what usually defeats exporters, and the front end is
about 1 % of the time anyway (docs/performance.md).

Two files come out, each recorded with its SHA-256 in `export.json`:
- `ecapa_fp32.onnx`: the network as is. It keeps the checkpoint's `model_version` only if its
  embeddings agree with PyTorch's on the probe inputs within `EQUIVALENCE_MAX_ABS` (same
  embedding space, voiceprints interchangeable); otherwise it gets a derived version.
- `ecapa_int8.onnx`: static int8 quantisation of every convolution (per-channel int8 weights,
  uint8 activations, QDQ format, the form ONNX Runtime runs with VNNI kernels). Activation ranges
  come from `data/ecapa_int8_calibration.json`, measured once on the dev set's speech through the
  product's front end (`voiceid models export --calibration-manifest`), so the export needs no
  audio and is reproducible. Quantised embeddings are *not* numerically equivalent, so this file
  always carries a derived version (`<model_version>-int8-<hash>`): voiceprints enrolled with one
  are never compared with vectors of the other.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import REQUIRED_FILES, VerifiedModel, sha256_of, verify_file, verify_model_dir

ONNX_DIR = "onnx"
RECORD_FILE = "export.json"
OPSET = 17
# Largest element-wise gap between ONNX and PyTorch unit-length embeddings that still counts as
# the same model. fp32 kernels that only reorder sums land near 1e-6; int8 lands near 1e-2.
EQUIVALENCE_MAX_ABS = 1e-4
CALIBRATION_RESOURCE = "ecapa_int8_calibration.json"
_PROBE_SEED = 20240613
FEATURE_DIM = 80

FloatArray = npt.NDArray[np.float32]


class OnnxPrecision(StrEnum):
    FP32 = "fp32"
    INT8 = "int8"


ONNX_FILES = {OnnxPrecision.FP32: "ecapa_fp32.onnx", OnnxPrecision.INT8: "ecapa_int8.onnx"}


@dataclass(frozen=True)
class ExportedFile:
    precision: OnnxPrecision
    path: Path
    sha256: str
    model_version: str
    max_abs_diff: float  # vs PyTorch on the probe inputs, unit-length embeddings


class _EmbeddingNet(torch.nn.Module):
    """(batch, frames, 80) normalised features + relative lengths -> (batch, 192) raw embeddings."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network(feats, lengths).squeeze(1)
        return out


def onnx_dir(model_dir: Path) -> Path:
    return model_dir / ONNX_DIR


def probe_inputs() -> list[tuple[FloatArray, FloatArray]]:
    """Fixed inputs for the equivalence check: several lengths, a padded batch, seeded noise.

    Mean-normalised filterbanks are roughly zero-mean with unit-order spread, which seeded normal
    noise imitates well enough to expose a wrong kernel; real speech is checked by the tests.
    """
    rng = np.random.default_rng(_PROBE_SEED)
    shapes = [(1, 150, [1.0]), (1, 500, [1.0]), (3, 320, [1.0, 0.75, 0.4])]
    return [
        (rng.standard_normal((b, t, FEATURE_DIM)).astype(np.float32) * 4.0, np.asarray(rel, dtype=np.float32))
        for b, t, rel in shapes
    ]


def _unit(x: npt.NDArray[np.floating]) -> FloatArray:
    out: FloatArray = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One intra-op thread per inference by default, like torch: parallelism comes from the pool.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # EXTENDED fuses the QDQ pairs into int8 kernels. ALL adds layout transforms that gain
    # nothing on these 1-D convolutions (measured) and crash ORT 1.32 on the quantised graph.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return options


def max_abs_gap(reference: torch.nn.Module, path: Path, inputs: Sequence[tuple[FloatArray, FloatArray]]) -> float:
    """Largest |onnx - torch| over the unit-length embeddings of `inputs`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    gap = 0.0
    for feats, lengths in inputs:
        with torch.inference_mode():
            ref = _unit(reference(torch.from_numpy(feats), torch.from_numpy(lengths)).numpy())
        out = _unit(session.run(None, {"feats": feats, "lengths": lengths})[0])
        gap = max(gap, float(np.abs(out - ref).max()))
    return gap


def _export_fp32(net: torch.nn.Module, target: Path) -> None:
    feats, lengths = probe_inputs()[2]
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns about its own deprecation and about tracing
        # Python control flow on shapes; both are expected (the dynamic axes are checked below).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.from_numpy(feats), torch.from_numpy(lengths)),
            str(target),
            input_names=["feats", "lengths"],
            output_names=["embedding"],
            dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantise_int8(fp32: Path, target: Path, calibration: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="voiceid-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph clean-up first: without it the quantiser meets tensors of
        # unknown shape and writes a graph that ORT's optimiser cannot load.
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            reduce_range=False,  # Zen 4 has VNNI: no saturation risk with full-range weights
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(calibration),
        )


def packaged_calibration() -> Path:
    return Path(__file__).resolve().parent / "data" / CALIBRATION_RESOURCE


def int8_version(source_version: str, sha256: str) -> str:
    return f"{source_version}-int8-{sha256[:12]}"


def fp32_version(source_version: str, sha256: str, max_abs_diff: float) -> str:
    if max_abs_diff <= EQUIVALENCE_MAX_ABS:
        return source_version
    return f"{source_version}-onnx-{sha256[:12]}"


def export(model: VerifiedModel, calibration: Path | None = None) -> dict[OnnxPrecision, ExportedFile]:
    """Write both ONNX files and `export.json` into `<model_dir>/onnx/`; return what was recorded."""
    from voiceid.models.embedder import load_modules

    torch.manual_seed(0)
    calibration = calibration or packaged_calibration()
    net = _EmbeddingNet(load_modules(model.directory)["embedding_model"]).eval()
    probes = probe_inputs()
    target_dir = onnx_dir(model.directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target_dir) as tmp:
        staged = {p: Path(tmp) / name for p, name in ONNX_FILES.items()}
        _export_fp32(net, staged[OnnxPrecision.FP32])
        _quantise_int8(staged[OnnxPrecision.FP32], staged[OnnxPrecision.INT8], calibration)
        exported: dict[OnnxPrecision, ExportedFile] = {}
        for precision, path in staged.items():
            digest = sha256_of(path)
            gap = max_abs_gap(net, path, probes)
            version = (
                fp32_version(model.model_version, digest, gap)
                if precision is OnnxPrecision.FP32
                else int8_version(model.model_version, digest)
            )
            final = target_dir / ONNX_FILES[precision]
            os.replace(path, final)
            exported[precision] = ExportedFile(precision, final, digest, version, gap)
    record = {
        "source_model_version": model.model_version,
        "source_files": REQUIRED_FILES,
        "opset": OPSET,
        "torch": torch.__version__,
        "onnxruntime": _ort_version(),
        "calibration_sha256": sha256_of(calibration),
        "equivalence_max_abs": EQUIVALENCE_MAX_ABS,
        "files": {
            str(e.precision): {
                "file": e.path.name,
                "sha256": e.sha256,
                "model_version": e.model_version,
                "max_abs_diff_vs_torch": e.max_abs_diff,
            }
            for e in exported.values()
        },
    }
    tmp_record = target_dir / f".{RECORD_FILE}.partial"
    tmp_record.write_text(json.dumps(record, indent=2) + "\n")
    tmp_record.replace(target_dir / RECORD_FILE)
    return exported


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def load_exported(model: VerifiedModel, precision: OnnxPrecision) -> ExportedFile:
    """The recorded export of `precision`, its file hash-checked against the record.

    Refused when missing, when exported from another checkpoint (stale after a model change) or
    when the file no longer hashes to what the export recorded.
    """
    target_dir = onnx_dir(model.directory)
    record_path = target_dir / RECORD_FILE
    if not record_path.is_file():
        raise VoiceIdError(
            ErrorCode.MODEL_FILE_MISSING,
            f"no ONNX export in {target_dir} (run `voiceid models export`)",
            file=str(record_path),
        )
    record = json.loads(record_path.read_text())
    if record.get("source_model_version") != model.model_version:
        raise VoiceIdError(
            ErrorCode.MODEL_VERSION_MISMATCH,
            f"the ONNX export in {target_dir} was made from model {record.get('source_model_version')}, "
            f"not {model.model_version}; run `voiceid models export` again",
        )
    entry = record["files"].get(str(precision))
    if entry is None:
        raise VoiceIdError(ErrorCode.MODEL_FILE_MISSING, f"no {precision} ONNX model recorded in {record_path}")
    path = target_dir / entry["file"]
    verify_file(path, entry["sha256"])
    return ExportedFile(precision, path, entry["sha256"], entry["model_version"], float(entry["max_abs_diff_vs_torch"]))


def is_exported(model_dir: Path) -> bool:
    try:
        model = verify_model_dir(model_dir)
        for precision in OnnxPrecision:
            load_exported(model, precision)
    except (VoiceIdError, KeyError, ValueError):
        return False
    return True


class _FeatureReader:
    """ORT calibration reader over a sequence of (feats, lengths) pairs."""

    def __init__(self, items: Iterator[tuple[FloatArray, FloatArray]]) -> None:
        self._items = items

    def get_next(self) -> dict[str, FloatArray] | None:
        item = next(self._items, None)
        return None if item is None else {"feats": item[0], "lengths": item[1]}


def calibrate(model: VerifiedModel, features: Sequence[FloatArray], out: Path) -> None:
    """Measure activation ranges of the fp32 graph on real features; write ORT's calibration cache.

    `features` are (1, frames, 80) normalised filterbanks of speech as the product prepares it.
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from voiceid.models.embedder import load_modules

    net = _EmbeddingNet(load_modules(model.directory)["embedding_model"]).eval()
    with tempfile.TemporaryDirectory(prefix="voiceid-calib-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        prepared = Path(tmp) / "prepared.onnx"
        _export_fp32(net, fp32)
        quant_pre_process(str(fp32), str(prepared))
        calibrator = create_calibrator(
            str(prepared),
            [],  # every tensor: the quantiser picks the Conv inputs it needs from the cache
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        ones = np.ones(1, dtype=np.float32)
        calibrator.collect_data(_FeatureReader(iter([(f, ones) for f in features])))
        save_tensors_data(calibrator.compute_data(), out)
