"""Audio -> embedding, the one path shared by the API, the telephony streams and `voiceid eval`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.audio.decode import DecodedAudio
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.models.embedder import Embedder, shared_embedder


@dataclass(frozen=True)
class EmbeddedUtterance:
    vector: npt.NDArray[np.float32]  # (192,), unit length
    model_version: str
    quality: QualityReport


class Engine:
    def __init__(self, front_end: FrontEnd, embedder: Embedder) -> None:
        self.front_end = front_end
        self.embedder = embedder

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        return cls(
            FrontEnd(FrontEndConfig.from_settings(settings)),
            shared_embedder(settings.model_dir, settings.torch_threads, settings.inference_backend),
        )

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    def embed_decoded(self, decoded: DecodedAudio) -> EmbeddedUtterance:
        prepared = self.front_end.prepare_decoded(decoded)
        vector = self.embedder.embed(prepared.speech)
        return EmbeddedUtterance(vector, self.embedder.model_version, prepared.quality)

    def embed_bytes(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        return self.embed_decoded(self.front_end.decode(data, content_type))
