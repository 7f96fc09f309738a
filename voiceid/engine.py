"""Audio -> embedding, the one path shared by the API, the telephony streams and `voiceid eval`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.stage import PadEvidence, PadStage
from voiceid.audio.decode import DecodedAudio
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.phone_line import phone_line
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.models.embedder import Embedder
from voiceid.models.registry import shared_embedder


@dataclass(frozen=True)
class EmbeddedUtterance:
    vector: npt.NDArray[np.float32]  # (192,), unit length
    model_version: str
    quality: QualityReport
    pad: PadEvidence | None = None  # countermeasure score and replay fingerprint (voiceid.antispoof)
    # Set only while the CM is deferred (`analyse_decoded(..., defer_cm=True)`): the audio it will score.
    cm_audio: DecodedAudio | None = None

    @property
    def cm_pending(self) -> bool:
        return self.cm_audio is not None


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

    def analyse_decoded(self, decoded: DecodedAudio, defer_cm: bool = False) -> EmbeddedUtterance:
        """`defer_cm`: leave the countermeasure out for now (`with_cm` or `without_cm` settles it), so a
        caller that knows the decision first can skip it where it cannot change the outcome."""
        prepared = self.front_end.prepare_decoded(decoded)
        vector = self.embedder.embed(prepared.speech)
        # The countermeasure sees the whole decoded call (pauses and all: silence and its noise floor
        # carry synthesis artefacts), not the VAD-trimmed speech the embedding uses.
        pad = None if self.pad is None else self.pad.assess(decoded, vector, cm=not defer_cm)
        deferred = defer_cm and self.pad is not None and self.pad.scorer is not None
        return EmbeddedUtterance(
            vector, self.embedder.model_version, prepared.quality, pad, decoded if deferred else None
        )

    def analyse(self, data: bytes, content_type: str | None, defer_cm: bool = False) -> EmbeddedUtterance:
        """Bytes -> decoded 16 kHz speech -> embedding (+ countermeasure score and fingerprint)."""
        return self.analyse_decoded(self.front_end.decode(data, content_type), defer_cm)

    def embed_phone_view(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        """The embedding of wideband audio as a G.711 line would deliver it (`voiceid.enrolment.views`):
        band-limited, μ-law coded and decoded again through the same front end as a phone call. No
        countermeasure: the view is derived from audio the countermeasure has already judged."""
        decoded = self.front_end.decode(data, content_type)
        prepared = self.front_end.prepare(*phone_line(decoded.samples, decoded.sample_rate))
        return EmbeddedUtterance(self.embedder.embed(prepared.speech), self.embedder.model_version, prepared.quality)

    def with_cm(self, utterance: EmbeddedUtterance) -> EmbeddedUtterance:
        """A deferred utterance with its CM score (run it on the inference pool)."""
        if utterance.cm_audio is None or self.pad is None or utterance.pad is None:
            return utterance
        pad = self.pad.with_cm(utterance.pad, utterance.cm_audio, utterance.vector)
        return replace(utterance, pad=pad, cm_audio=None)

    @staticmethod
    def without_cm(utterance: EmbeddedUtterance) -> EmbeddedUtterance:
        """A deferred utterance whose CM is skipped: the log will say so (cm_check SKIPPED)."""
        if utterance.cm_audio is None or utterance.pad is None:
            return utterance
        return replace(utterance, pad=replace(utterance.pad, cm_skipped=True), cm_audio=None)
