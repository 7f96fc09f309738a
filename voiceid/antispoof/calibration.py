"""Countermeasure thresholds fitted on genuine callers' speech, per channel, at a target BPCER (pure).

The bona fide side of the fit is every kind of genuine audio the service meets, each file labelled
with the data source it came from (wideband read speech, LibriSpeech, native 8 kHz recordings,
ASVspoof's bona fide, ...) and the service channel it arrives on (`phone` for G.711 and native
narrowband, `wideband` otherwise). A channel's threshold is the most lenient of its sources' own
BPCER thresholds, so that no source with enough files is flagged more often than the target on
the speakers it was fitted on; a pooled threshold over the rest bounds the sources too small to
count on their own.

AASIST's false alarms cluster by speaker (docs/antispoof.md), so a BPCER measured on the speakers a
threshold was fitted on flatters it. A share of each source's speakers (ranked by a hash of the
speaker id, stable across runs; at least one where a source has three or more speakers) is held out
of the fit, and the report gives the BPCER on them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceid.antispoof.metrics import bpcer_at, threshold_at_bpcer
from voiceid.antispoof.policy import ChannelThreshold, PadThresholds

# A source with fewer fit files than this has no threshold of its own: at 1 % target its threshold
# would be its lowest score, a fit on one file. Its files still count in the channel's pooled fit.
MIN_SOURCE_FILES = 20


@dataclass(frozen=True)
class BonafideScore:
    utt_id: str
    speaker_id: str
    source: str  # data source (e.g. "dev_8k/FSDD (digit string)")
    eval_channel: str  # how it was sent: clean | g711-ulaw | g711-alaw
    channel: str  # the service channel it arrived on: phone | wideband
    score: float  # calibrated CM score, higher = bona fide


def _rank(source: str, speaker_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{source}|{speaker_id}".encode()).digest()[:8], "big")


def held_out_speakers(speakers: Iterable[tuple[str, str]], share: float) -> set[tuple[str, str]]:
    """The (source, speaker) pairs kept out of the fit: per source, the round(share x n) speakers
    ranking first by a stable hash; at least one where the source has three or more speakers, none
    where it has fewer (that would leave too little to fit the source on)."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for source, speaker in speakers:
        by_source[source].add(speaker)
    held: set[tuple[str, str]] = set()
    for source, names in by_source.items():
        count = 0 if share <= 0.0 or len(names) < 3 else max(1, round(share * len(names)))
        held |= {(source, s) for s in sorted(names, key=lambda s: _rank(source, s))[:count]}
    return held


def channel_threshold(scores: Sequence[BonafideScore], target_bpcer: float, min_source_files: int) -> float:
    """The most lenient of the per-source thresholds (sources with enough files) and the pooled one."""
    pooled = np.array([s.score for s in scores])
    candidates = [threshold_at_bpcer(pooled, target_bpcer)]
    by_source: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        by_source[s.source].append(s.score)
    for values in by_source.values():
        if len(values) >= min_source_files:
            candidates.append(threshold_at_bpcer(np.array(values), target_bpcer))
    return min(candidates)


def _rate(scores: Sequence[BonafideScore], threshold: float) -> float | None:
    return None if not scores else round(bpcer_at(np.array([s.score for s in scores]), threshold), 4)


def fit_thresholds(
    scores: Sequence[BonafideScore],
    backend_id: str,
    target_bpcer: float,
    holdout_share: float = 0.3,
    min_source_files: int = MIN_SOURCE_FILES,
) -> tuple[PadThresholds, dict[str, Any]]:
    """Per-channel thresholds fitted on the speakers not held out, and the BPCER they give per channel
    and per (source, how it was sent), on the fitted and on the held-out speakers."""
    kept_out = held_out_speakers(((s.source, s.speaker_id) for s in scores), holdout_share)
    held = {s.utt_id: (s.source, s.speaker_id) in kept_out for s in scores}
    channels: dict[str, ChannelThreshold] = {}
    per_channel: dict[str, Any] = {}
    for channel in sorted({s.channel for s in scores}):
        fit = [s for s in scores if s.channel == channel and not held[s.utt_id]]
        test = [s for s in scores if s.channel == channel and held[s.utt_id]]
        if not fit:
            continue
        threshold = channel_threshold(fit, target_bpcer, min_source_files)
        fit_rate = _rate(fit, threshold) or 0.0
        channels[channel] = ChannelThreshold(
            threshold, target_bpcer, fit_rate, len(fit), _rate(test, threshold), len(test)
        )
        per_channel[channel] = {
            "threshold": round(threshold, 4),
            "n_fit": len(fit),
            "bpcer_fit": fit_rate,
            "n_held_out": len(test),
            "bpcer_held_out": _rate(test, threshold),
        }
    per_source: dict[str, Any] = {}
    for source, sent in sorted({(s.source, s.eval_channel) for s in scores}):
        group = [s for s in scores if s.source == source and s.eval_channel == sent]
        channel = group[0].channel
        if channel not in channels:
            continue
        threshold = channels[channel].threshold
        fit = [s for s in group if not held[s.utt_id]]
        test = [s for s in group if held[s.utt_id]]
        per_source[f"{source} [{sent}]"] = {
            "channel": channel,
            "n_fit": len(fit),
            "bpcer_fit": _rate(fit, threshold),
            "n_held_out": len(test),
            "bpcer_held_out": _rate(test, threshold),
            "speakers_held_out": len({s.speaker_id for s in test}),
            "bpcer_all": _rate(group, threshold),
        }
    report = {
        "target_bpcer": target_bpcer,
        "holdout_share": holdout_share,
        "min_source_files": min_source_files,
        "per_channel": per_channel,
        "per_source": per_source,
    }
    return PadThresholds(backend_id, channels), report
