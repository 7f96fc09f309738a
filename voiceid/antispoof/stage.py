"""The presentation-attack stage of the one scoring path, run by the engine beside the embedding.

From the same decoded audio as the embedding it computes the countermeasure score (AASIST, or the
model in VOICEID_CM_MODEL_DIR, then the fitted back-end) and the replay fingerprint. Nothing here
touches the database: the decision and storage side is `voiceid.services.pad_checks`.

The CM score's meaning: a log-likelihood ratio in nats, ln p(audio | bona fide) / p(audio | spoof),
as calibrated on dev_spoof. Higher means more likely bona fide; 0 means no evidence either way; a
call is flagged when its score is below the threshold fitted for its channel (phone / wideband) by
`voiceid calibrate-pad` for a target share of genuine callers flagged (BPCER).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from voiceid.antispoof import fingerprint as fp
from voiceid.antispoof.backend import PadBackend, features, load_backend
from voiceid.antispoof.countermeasure import CmOutput, Countermeasure
from voiceid.antispoof.detector import shared_countermeasure
from voiceid.audio.decode import DecodedAudio
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PadEvidence:
    cm_raw: float | None  # the detector's own score (window mean), higher = bona fide
    cm_score: float | None  # calibrated bona fide LLR (nats), see module doc
    cm_version: str | None  # detector version + back-end
    fingerprint: fp.Fingerprint | None
    # The CM was not run because its answer could not change the decision (a REJECT on the voice,
    # services: Verifications._countermeasure_where_needed); cm_raw and cm_score are then None.
    cm_skipped: bool = False


class CmScorer:
    """Countermeasure + back-end: audio and speaker embedding in, calibrated score out."""

    def __init__(self, cm: Countermeasure, backend: PadBackend) -> None:
        if backend.cm_version != cm.version:
            raise VoiceIdError(
                ErrorCode.CONFIGURATION_ERROR,
                f"the PAD back-end was fitted for countermeasure {backend.cm_version}, but {cm.version} is "
                "loaded; fit one for this model (bench/pad_backend.py --fit) and set VOICEID_CM_BACKEND_FILE",
            )
        self.cm = cm
        self.backend = backend

    @property
    def version(self) -> str:
        return f"{self.cm.version}/{'+'.join(self.backend.groups)}"

    def calibrate(self, out: CmOutput, speaker_vector: FloatArray | None) -> float:
        x = features(self.backend.groups, out.window_scores, out.embedding, speaker_vector)
        return float(self.backend.llr(x))

    def score(self, decoded: DecodedAudio, speaker_vector: FloatArray | None) -> tuple[float, float]:
        """(raw, calibrated) for one call."""
        out = self.cm.score(decoded.samples, decoded.sample_rate)
        return out.score, self.calibrate(out, speaker_vector)


class PadStage:
    def __init__(self, scorer: CmScorer | None, fingerprints: bool) -> None:
        self.scorer = scorer
        self.fingerprints = fingerprints

    @classmethod
    def from_settings(cls, settings: Settings) -> PadStage | None:
        if not settings.cm_enabled and not settings.replay_enabled:
            return None
        scorer = None
        if settings.cm_enabled:
            cm = shared_countermeasure(
                settings.cm_model_dir, settings.torch_threads, settings.cm_max_windows, settings.cm_runtime
            )
            scorer = CmScorer(cm, load_backend(settings.cm_backend_file))
        return cls(scorer, settings.replay_enabled)

    def assess(self, decoded: DecodedAudio, speaker_vector: FloatArray | None, cm: bool = True) -> PadEvidence:
        """The fingerprint, and the CM score unless `cm` is False (deferred: `with_cm` adds it later)."""
        raw = score = None
        if self.scorer is not None and cm:
            raw, score = self.scorer.score(decoded, speaker_vector)
        print_ = fp.fingerprint(decoded.samples, decoded.sample_rate) if self.fingerprints else None
        return PadEvidence(raw, score, None if self.scorer is None else self.scorer.version, print_)

    def with_cm(self, evidence: PadEvidence, decoded: DecodedAudio, speaker_vector: FloatArray | None) -> PadEvidence:
        """Deferred evidence completed with the CM score."""
        if self.scorer is None:
            return evidence
        raw, score = self.scorer.score(decoded, speaker_vector)
        return replace(evidence, cm_raw=raw, cm_score=score, cm_version=self.scorer.version)
