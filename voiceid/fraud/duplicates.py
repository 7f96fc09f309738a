"""Duplicate-identity detection (pure): one voice enrolled under several speaker references."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.fraud.index import Searchable

MAX_MATCHES = 5


@dataclass(frozen=True)
class DuplicateMatch:
    speaker_ref: str
    score: float


def find_duplicates(
    voiceprint: npt.NDArray[np.floating],
    index: Searchable,
    refs: Mapping[str, str],
    threshold: float,
    exclude: str | None = None,
) -> list[DuplicateMatch]:
    """Other speakers (index keys mapped to references by `refs`) whose voiceprint's raw cosine
    with `voiceprint` is at least `threshold`, best first. `exclude` is the key of the speaker being
    enrolled, who trivially matches themselves."""
    neighbours = index.search(voiceprint, MAX_MATCHES + 1)[0]
    return [
        DuplicateMatch(refs.get(n.key, n.key), round(n.score, 6))
        for n in neighbours
        if n.key != exclude and n.score >= threshold
    ][:MAX_MATCHES]
