"""`voiceid serve` with a hashing embedding engine instead of the ECAPA model, for the multi-replica
test and bench/replicas.py: three real model processes would not fit this machine's two cores next
to the load generator, and the point there is the topology (database, caches, LB, worker), not the
model. Everything but `Engine.analyse` is the product: the same app, settings, service and DB.

Bodies are `voice:<speaker seed>:<utterance>`: one speaker's utterances share a direction (cosine
about 0.9 between two of them), different speakers are near-orthogonal.

    python -m voiceid.testkit.fake_replica --port 8101
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import uvicorn

from voiceid.api.app import create_app
from voiceid.audio.quality import QualityReport
from voiceid.config import get_settings
from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.models.files import MODEL_VERSION
from voiceid.models.registry import backend_model_version, concrete_backend

DIM = 192
NET_SPEECH_S = 25.0


def _unit(seed: str) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    v = rng.standard_normal(DIM)
    return v / np.linalg.norm(v)


def voice(speaker: str, utterance: str | int) -> bytes:
    return f"voice:{speaker}:{utterance}".encode()


def vector_of(body: bytes) -> np.ndarray:
    try:
        kind, speaker, utterance = body.decode().split(":", 2)
    except (UnicodeDecodeError, ValueError):
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "not a test voice") from None
    if kind != "voice":
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "not a test voice")
    v = 3.0 * _unit(f"speaker:{speaker}") + _unit(f"utt:{speaker}:{utterance}")
    unit: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return unit


class HashEngine:
    """Vectors carry the model version of the backend the settings select (`auto`: the CPU's
    fastest, as a replica on a fresh database resolves it), so the decision-data pins that
    `voiceid db upgrade` writes are checked exactly as for a real replica on its defaults."""

    def __init__(self, model_version: str = MODEL_VERSION) -> None:
        self.model_version = model_version

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        quality = QualityReport(NET_SPEECH_S + 1.0, NET_SPEECH_S, 30.0, 0.0, 8000, "ULAW", "phone")
        return EmbeddedUtterance(vector_of(data), self.model_version, quality)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = get_settings()
    version = backend_model_version(settings.model_dir, concrete_backend(settings.inference_backend))
    app = create_app(settings, engine=HashEngine(version))  # type: ignore[arg-type]
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
