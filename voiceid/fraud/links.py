"""Linked calls (pure): which other retained attempts carry the same voice under another identity,
and when that is enough to raise a multi-identity alert.

The account-takeover pattern is one voice claiming several customers within days. Every scored
attempt keeps its embedding for the retention period, so "has this voice called on other
accounts?" is a 1:N search of one attempt against the others, scored on the calibrated LLR scale of
each pair's channel (`fraud/scale.py`) and kept where the claimed identity differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voiceid.fraud.index import Neighbour
from voiceid.fraud.scale import FraudScale, pair_channel
from voiceid.verify.decision import Outcome, Reason
from voiceid.verify.vectors import build_voiceprint

# A linked-calls search ranks this many nearest attempts by cosine before scoring them on the
# pairs' channels, and reports at most MAX_LINKS.
MAX_LINK_CANDIDATES = 1000
MAX_LINKS = 200
MAX_POOL_SEEDS = 10  # first-pass links pooled with the call for the second pass


@dataclass(frozen=True)
class AttemptMeta:
    """What is known of a retained attempt without decrypting it."""

    verification_id: str
    speaker_ref: str
    channel: str | None
    decision: str
    created_at: datetime


@dataclass(frozen=True)
class Link:
    verification_id: str
    speaker_ref: str
    channel: str | None
    decision: str
    created_at: datetime
    llr: float
    raw_score: float
    scale: str  # the channel calibration the pair was scored with
    # False: scored against this call alone; True: found in the second pass, against this call pooled
    # with its first-pass links (llr and raw_score are then against that pooled voice).
    pooled: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "verification_id": self.verification_id,
            "speaker_id": self.speaker_ref,
            "channel": self.channel,
            "decision": self.decision,
            "created_at": self.created_at.isoformat(),
            "llr": self.llr,
            "raw_score": self.raw_score,
            "scale": self.scale,
            "pooled": self.pooled,
        }


def links_from_neighbours(
    neighbours: Sequence[Neighbour],
    metas: Mapping[str, AttemptMeta],
    own_ref: str,
    own_channel: str | None,
    scale: FraudScale,
    threshold_llr: float,
    exclude: str | None = None,
    pooled: bool = False,
) -> list[Link]:
    """The neighbours of an attempt that claimed *another* identity and score at least
    `threshold_llr`, best first. Calls on the same identity are the customer's own history."""
    others = [
        (n, meta)
        for n in neighbours
        if (meta := metas.get(n.key)) is not None and n.key != exclude and meta.speaker_ref != own_ref
    ]
    if not others:
        return []
    # One vector operation for the candidates' LLRs (each pair on its own channels' scale).
    llrs = scale.llrs([n.score for n, _ in others], own_channel, [meta.channel for _, meta in others])
    links = []
    for (n, meta), value in zip(others, llrs, strict=True):
        llr = float(value)
        if llr >= threshold_llr:
            links.append(
                Link(
                    meta.verification_id,
                    meta.speaker_ref,
                    meta.channel,
                    meta.decision,
                    meta.created_at,
                    round(llr, 2),
                    round(n.score, 4),
                    pair_channel(own_channel, meta.channel),
                    pooled,
                )
            )
    links.sort(key=lambda link: (-link.llr, link.verification_id))
    return links


def merge_links(first: list[Link], second: list[Link]) -> list[Link]:
    """First-pass links, then the calls only the pooled second pass found, best first."""
    seen = {link.verification_id for link in first}
    merged = first + [link for link in second if link.verification_id not in seen]
    merged.sort(key=lambda link: (link.pooled, -link.llr, link.verification_id))
    return merged


class AttemptSearch(Protocol):
    """The retained attempts' vectors, searchable by cosine (`fraud.index.VectorIndex`)."""

    def search(self, probes: npt.NDArray[np.floating], k: int) -> list[list[Neighbour]]: ...

    def vectors(self, keys: Sequence[str]) -> npt.NDArray[np.float32]: ...


def find_links(
    vector: npt.NDArray[np.float32],
    own_ref: str,
    own_channel: str | None,
    index: AttemptSearch,
    metas: Mapping[str, AttemptMeta],
    scale: FraudScale,
    threshold_llr: float,
    pooled_threshold_llr: float | None,
    candidates: int,
    exclude: str | None = None,
) -> list[Link]:
    """The retained attempts under other identities whose voice matches `vector`: the `candidates`
    nearest by cosine scored on their pairs' channels at `threshold_llr`; then, unless
    `pooled_threshold_llr` is None, a second pass with the call pooled with its best first-pass links
    at that (stricter) bar. Best first, at most MAX_LINKS."""
    first = links_from_neighbours(
        index.search(vector, candidates)[0], metas, own_ref, own_channel, scale, threshold_llr, exclude
    )
    if not first or pooled_threshold_llr is None:
        return first[:MAX_LINKS]
    # Second pass: one short call is weak evidence of a voice; pooled with the calls it already
    # links to (as flagged calls are pooled on the watchlist) it finds more of the same voice's
    # calls. The stricter bar holds the false links of a pooled voice down (docs/fraud.md).
    seeds = index.vectors([link.verification_id for link in first[:MAX_POOL_SEEDS]])
    pooled = build_voiceprint(np.vstack([vector[None, :], seeds]))
    second = links_from_neighbours(
        index.search(pooled, candidates)[0],
        metas,
        own_ref,
        own_channel,
        scale,
        pooled_threshold_llr,
        exclude,
        pooled=True,
    )
    return merge_links(first, second)[:MAX_LINKS]


def identities_within(links: Sequence[Link], own_ref: str, at: datetime, days: float) -> list[str]:
    """The identities one voice was heard on within `days` before or after `at`, the call's own first."""
    window = timedelta(days=days)
    others = sorted({link.speaker_ref for link in links if abs(link.created_at - at) <= window} - {own_ref})
    return [own_ref, *others]


def alert_identities(links: Sequence[Link], own_ref: str, at: datetime, days: float, min_identities: int) -> list[str]:
    """The identities to raise a multi-identity alert for, or [] when there are fewer than
    `min_identities` (the call's own identity counts) within the window."""
    identities = identities_within(links, own_ref, at, days)
    return identities if len(identities) >= min_identities else []


def mark_linked(outcome: Outcome, alert: bool) -> Outcome:
    """The outcome with LINKED_VOICE added when the call raised a multi-identity alert. The decision
    stands: the alert sends the calls to an analyst, it does not judge this caller alone."""
    return Outcome(outcome.decision, (*outcome.reasons, Reason.LINKED_VOICE)) if alert else outcome
