"""Duplicate-identity detection (pure): one voice enrolled under several speaker references.

Voiceprints are compared on the calibrated LLR scale of the pair's channel (`fraud/scale.py`), so
the same person enrolled once from wideband audio and once from the phone is judged on the phone
scale, where their (lower) cross-channel cosine still means "same voice".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.fraud.index import Searchable
from voiceid.fraud.scale import FraudScale

MAX_MATCHES = 5
OVERFETCH = 4


@dataclass(frozen=True)
class DuplicateMatch:
    speaker_ref: str
    llr: float
    raw_score: float
    channel: str  # the other voiceprint's channel

    def to_dict(self) -> dict[str, object]:
        return {"speaker_id": self.speaker_ref, "llr": self.llr, "raw_score": self.raw_score, "channel": self.channel}


def find_duplicates(
    voiceprint: npt.NDArray[np.floating],
    channel: str | None,
    index: Searchable,
    refs: Mapping[str, str],
    channels: Mapping[str, str | None],
    scale: FraudScale,
    threshold_llr: float,
    exclude: str | None = None,
) -> list[DuplicateMatch]:
    """Other speakers (index keys mapped to references by `refs`) whose voiceprint scores at least
    `threshold_llr` against `voiceprint`, best first. `exclude` is the key of the speaker being
    enrolled, who trivially matches themselves."""
    found = []
    for n in index.search(voiceprint, (MAX_MATCHES + 1) * OVERFETCH)[0]:
        if n.key == exclude:
            continue
        other = channels.get(n.key)
        llr = float(scale.llr(n.score, channel, other))
        if llr >= threshold_llr:
            found.append(DuplicateMatch(refs.get(n.key, n.key), round(llr, 2), round(n.score, 4), other or "phone"))
    found.sort(key=lambda d: -d.llr)
    return found[:MAX_MATCHES]
