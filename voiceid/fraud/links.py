"""Linked calls (pure): which other retained attempts carry the same voice under another identity,
and when that is enough to raise a multi-identity alert.

The account-takeover pattern is one voice claiming several customers within days. Every scored
attempt keeps its embedding for the retention period, so "has this voice called on other
accounts?" is a 1:N search of one attempt against the others, scored on the calibrated LLR scale of
each pair's channel (`fraud/scale.py`) and kept where the claimed identity differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from voiceid.fraud.index import Neighbour
from voiceid.fraud.scale import FraudScale, pair_channel
from voiceid.verify.decision import Outcome, Reason


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
    metas: dict[str, AttemptMeta],
    own_ref: str,
    own_channel: str | None,
    scale: FraudScale,
    threshold_llr: float,
    exclude: str | None = None,
    pooled: bool = False,
) -> list[Link]:
    """The neighbours of an attempt that claimed *another* identity and score at least
    `threshold_llr`, best first. Calls on the same identity are the customer's own history."""
    links = []
    for n in neighbours:
        meta = metas.get(n.key)
        if meta is None or n.key == exclude or meta.speaker_ref == own_ref:
            continue
        llr = float(scale.llr(n.score, own_channel, meta.channel))
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
