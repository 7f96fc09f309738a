"""Watchlist screening (pure): a probe vector and an index of known fraud voices -> the hits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.fraud.index import VectorIndex

# More hits than this on one call adds nothing for the analyst; the best ones are reported.
MAX_HITS = 5


@dataclass(frozen=True)
class WatchlistHit:
    entry_id: str
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "label": self.label, "score": self.score}


def screen(
    probe: npt.NDArray[np.floating],
    index: VectorIndex,
    labels: Mapping[str, str],
    threshold: float,
    max_hits: int = MAX_HITS,
) -> list[WatchlistHit]:
    """Entries whose raw cosine with `probe` is at least `threshold`, best first.

    The index must hold vectors of the probe's model version only: embeddings of two models live
    in different spaces and their cosine means nothing.
    """
    return [
        WatchlistHit(n.key, labels.get(n.key, ""), round(n.score, 6))
        for n in index.search(probe, max_hits)[0]
        if n.score >= threshold
    ]
