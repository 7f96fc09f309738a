"""Audio -> embedding, the one path shared by the API, the telephony streams and `voiceid eval`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.stage import PadEvidence, PadStage
from voiceid.audio.decode import DecodedAudio
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.phone_line import phone_line
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.models.embedder import Embedder, shared_embedder


@dataclass(frozen=True)
class EmbeddedUtterance:
    vector: npt.NDArray[np.float32]  # (192,), unit length
    model_version: str
    quality: QualityReport
    pad: PadEvidence | None = None  # countermeasure score and replay fingerprint (voiceid.antispoof)


class Engine:
    def __init__(self, front_end: FrontEnd, embedder: Embedder, pad: PadStage | None = None) -> None:
        self.front_end = front_end
        self.embedder = embedder
        self.pad = pad

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        return cls(
            FrontEnd(FrontEndConfig.from_settings(settings)),
            shared_embedder(settings.model_dir, settings.torch_threads, settings.inference_backend),
            PadStage.from_settings(settings),
        )

    @classmethod
    def embedding_only(cls, settings: Settings) -> Engine:
        """Audio -> embedding without the presentation-attack stage: the evaluation, cohort and
        calibration tools want speaker vectors only (the countermeasure costs more CPU per call than
        the embedding, docs/performance.md)."""
        return cls(
            FrontEnd(FrontEndConfig.from_settings(settings)),
            shared_embedder(settings.model_dir, settings.torch_threads, settings.inference_backend),
        )

    @property
    def cm_version(self) -> str | None:
        """The countermeasure (detector + back-end) scoring calls, None when it is off."""
        return None if self.pad is None or self.pad.scorer is None else self.pad.scorer.version

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    def embed_decoded(self, decoded: DecodedAudio) -> EmbeddedUtterance:
        prepared = self.front_end.prepare_decoded(decoded)
        vector = self.embedder.embed(prepared.speech)
        # The countermeasure sees the whole decoded call (pauses and all: silence and its noise floor
        # carry synthesis artefacts), not the VAD-trimmed speech the embedding uses.
        pad = None if self.pad is None else self.pad.assess(decoded, vector)
        return EmbeddedUtterance(vector, self.embedder.model_version, prepared.quality, pad)

    def embed_bytes(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        return self.embed_decoded(self.front_end.decode(data, content_type))

    def embed_phone_view(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        """The embedding of wideband audio as a G.711 line would deliver it (`voiceid.enrolment.views`):
        band-limited, μ-law coded and decoded again through the same front end as a phone call. No
        countermeasure: the view is derived from audio the countermeasure has already judged."""
        decoded = self.front_end.decode(data, content_type)
        prepared = self.front_end.prepare(*phone_line(decoded.samples, decoded.sample_rate))
        return EmbeddedUtterance(self.embedder.embed(prepared.speech), self.embedder.model_version, prepared.quality)
