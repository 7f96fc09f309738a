"""Enrolment: gather embeddings until there is enough net speech, then build the voiceprint (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.vectors import build_voiceprint


@dataclass(frozen=True)
class EnrolmentSample:
    vector: npt.NDArray[np.float32]
    net_speech_s: float


@dataclass(frozen=True)
class EnrolmentProgress:
    net_speech_s: float
    required_speech_s: float
    voiceprint: npt.NDArray[np.float32] | None  # set once net speech reaches the requirement

    @property
    def complete(self) -> bool:
        return self.voiceprint is not None


def progress(samples: Sequence[EnrolmentSample], required_speech_s: float) -> EnrolmentProgress:
    """Where an enrolment stands. The voiceprint is the plain normalised mean of the enrolment
    embeddings, exactly as `voiceid eval` builds it, so evaluation figures describe the service."""
    total = float(sum(s.net_speech_s for s in samples))
    if not samples or total < required_speech_s:
        return EnrolmentProgress(total, required_speech_s, None)
    vectors = np.stack([s.vector for s in samples])
    return EnrolmentProgress(total, required_speech_s, build_voiceprint(vectors))
