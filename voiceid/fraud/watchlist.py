"""Watchlist screening (pure): a probe vector and an index of known fraud voices -> the hits.

Scores are LLRs on the pair's channel calibration (`fraud/scale.py`): an entry built from phone
calls, compared with a phone call, is judged on the phone scale; a wideband entry against a wideband
call on the wideband scale; a mixed pair on the phone scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.fraud.index import VectorIndex
from voiceid.fraud.scale import FraudScale, pair_channel
from voiceid.verify.vectors import build_voiceprint

# More hits than this on one call adds nothing for the analyst; the best ones are reported.
MAX_HITS = 5
# The index ranks by raw cosine and the channels' scales differ, so a few more neighbours than
# reported are converted before the best by LLR are kept.
OVERFETCH = 4


@dataclass(frozen=True)
class WatchlistHit:
    entry_id: str
    label: str
    llr: float  # calibrated: natural-log likelihood ratio, same voice vs different voices
    raw_score: float  # cosine, for diagnosis
    scale: str  # the calibration the pair was scored with: phone | wideband | cross

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "label": self.label,
            "llr": self.llr,
            "raw_score": self.raw_score,
            "scale": self.scale,
        }


def screen(
    probe: npt.NDArray[np.floating],
    probe_channel: str | None,
    index: VectorIndex,
    labels: Mapping[str, str],
    channels: Mapping[str, str | None],
    scale: FraudScale,
    threshold_llr: float,
    max_hits: int = MAX_HITS,
) -> list[WatchlistHit]:
    """Entries whose calibrated LLR against `probe` is at least `threshold_llr`, best first.

    The index must hold vectors of the probe's model version only: embeddings of two models live
    in different spaces and their cosine means nothing.
    """
    neighbours = index.search(probe, max_hits * OVERFETCH)[0]
    hits = []
    for n in neighbours:
        other = channels.get(n.key)
        llr = float(scale.llr(n.score, probe_channel, other))
        if llr >= threshold_llr:
            hits.append(
                WatchlistHit(
                    n.key, labels.get(n.key, ""), round(llr, 2), round(n.score, 4), pair_channel(probe_channel, other)
                )
            )
    hits.sort(key=lambda h: -h.llr)
    return hits[:max_hits]


def pool_voice(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One watchlist voice from several flagged calls: the normalised mean of the normalised
    embeddings, as a voiceprint is built from enrolment utterances (averaging cancels the
    call-to-call variation that made single calls of one person score 0.42-0.76 together)."""
    return build_voiceprint(vectors)
