"""Stand-in engines for tests and benches whose point is not the model: decision logic on scripted
vectors, and requests that must never reach inference. Both have the `Engine.analyse` shape the
app calls, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance
from voiceid.models.files import MODEL_VERSION


class NoInferenceEngine:
    """For tests whose point is that no audio reaches the model (auth, consent, short-circuits)."""

    model_version = MODEL_VERSION

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        raise AssertionError("this request must not reach inference")


def unit(seed: int, dim: int = 192) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    vector: np.ndarray = v / np.linalg.norm(v)
    return vector


@dataclass
class ScriptedEngine:
    """Returns the vector registered for a body: decision logic is tested without the model.
    (The real model is used where the test is about audio.)"""

    model_version: str = MODEL_VERSION
    probes: dict[bytes, tuple[np.ndarray, float]] = field(default_factory=dict)

    def register(self, body: bytes, vector: np.ndarray, net_speech_s: float = 6.0) -> bytes:
        self.probes[body] = (vector, net_speech_s)
        return body

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        vector, speech = self.probes[data]
        quality = QualityReport(speech + 1.0, speech, 30.0, 0.0, 8000, "ULAW", "phone")
        return EmbeddedUtterance(vector.astype(np.float32), self.model_version, quality)
