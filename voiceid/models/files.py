"""The model's files: what they must hash to, and the version string derived from them.

The SHA-256 values are SpeechBrain's official ones for `speechbrain/spkrec-ecapa-voxceleb`
(see ../shared/models/spkrec-ecapa-voxceleb/SHA256SUMS). A file is hashed before torch ever
deserialises it, so a swapped or truncated checkpoint is refused by name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from voiceid.errors import ErrorCode, VoiceIdError

MODEL_NAME = "spkrec-ecapa-voxceleb"

# Files needed to compute embeddings. The classifier head and label encoder are only needed by
# SpeechBrain's stock Pretrainer; `voiceid models fetch` still installs them so the directory is a
# complete upstream copy that bare SpeechBrain can load too (used by the baseline benchmark).
REQUIRED_FILES: dict[str, str] = {
    "hyperparams.yaml": "6f78854fa04ba59e761437b76a2575d3aba5e5016de3e9b69f0c9a5077fb1a41",
    "embedding_model.ckpt": "0575cb64845e6b9a10db9bcb74d5ac32b326b8dc90352671d345e2ee3d0126a2",
    "mean_var_norm_emb.ckpt": "cd70225b05b37be64fc5a95e24395d804231d43f74b2e1e5a513db7b69b34c33",
}
OPTIONAL_FILES: dict[str, str] = {
    "classifier.ckpt": "fd9e3634fe68bd0a427c95e354c0c677374f62b3f434e45b78599950d860d535",
    "label_encoder.txt": "e13c3a167bb4112685670ee896d20e2b565af16b3a4ceeaa8689fa4d22adb8b9",
}
ALL_FILES: dict[str, str] = {**REQUIRED_FILES, **OPTIONAL_FILES}


@dataclass(frozen=True)
class VerifiedModel:
    directory: Path
    model_version: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_version_from_hashes(hashes: dict[str, str]) -> str:
    """Stable id of the embedding space: the hashes of the files that define it."""
    joined = "\n".join(f"{name}:{hashes[name]}" for name in sorted(REQUIRED_FILES))
    return f"ecapa-voxceleb-{hashlib.sha256(joined.encode()).hexdigest()[:12]}"


MODEL_VERSION = model_version_from_hashes(REQUIRED_FILES)


def verify_file(path: Path, expected_sha256: str) -> None:
    if not path.is_file():
        raise VoiceIdError(
            ErrorCode.MODEL_FILE_MISSING,
            f"model file {path.name} is missing from {path.parent} (run `voiceid models fetch`)",
            file=str(path),
        )
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise VoiceIdError(
            ErrorCode.MODEL_FILE_CORRUPT,
            f"model file {path.name} has SHA-256 {actual}, expected {expected_sha256}; "
            "delete it and run `voiceid models fetch`",
            file=str(path),
            expected=expected_sha256,
            actual=actual,
        )


def verify_model_dir(directory: Path, files: dict[str, str] = REQUIRED_FILES) -> VerifiedModel:
    """Check every file the embedder needs; raise naming the first bad one."""
    for name, expected in files.items():
        verify_file(directory / name, expected)
    return VerifiedModel(directory=directory, model_version=model_version_from_hashes(REQUIRED_FILES))
