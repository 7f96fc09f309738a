"""What the review page shows, in words and rounded figures (pure): reasons as sentences, the attempt as
labelled rows, chart inputs grouped by channel. Templates only lay these out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from voiceid.fraud.histogram import Threshold
from voiceid.statuses import ReviewKind
from voiceid.verify.decision import Reason
from voiceid.verify.policy import Scale

REASON_TEXT: dict[str, str] = {
    Reason.SCORE_ABOVE_ACCEPT_THRESHOLD: "Score at or above the accept threshold: the voice matches the voiceprint.",
    Reason.SCORE_BELOW_REJECT_THRESHOLD: "Score below the reject threshold: the voice does not match the voiceprint.",
    Reason.SCORE_BETWEEN_THRESHOLDS: "Score between the thresholds: not enough evidence either way.",
    Reason.INSUFFICIENT_SPEECH: "Too little speech to score reliably.",
    Reason.LOCKED_OUT: "The identity is locked after repeated failed attempts.",
    Reason.NO_VOICEPRINT: "The identity has no voiceprint (not enrolled).",
    Reason.MODEL_VERSION_MISMATCH: "The voiceprint was made by another model version; it must be re-enrolled.",
    Reason.SPEAKER_OPTED_OUT: "The customer opted out of voice ID.",
    Reason.LOW_QUALITY_AUDIO: "Poor audio (little speech or noise): the stricter thresholds applied.",
    Reason.WATCHLIST_MATCH: "The voice matches a fraud watchlist entry.",
    Reason.ENROLMENT_UNDER_REVIEW: "The enrolment is held for an analyst (possible duplicate identity).",
    Reason.LINKED_VOICE: "This voice was heard on several other identities within days (see linked calls).",
}

KIND_TEXT = {
    ReviewKind.DUPLICATE_IDENTITY: "Same voice enrolled under another identity",
    ReviewKind.WATCHLIST_MATCH: "Enrolment voice matches the watchlist",
    ReviewKind.LINKED_VOICE: "One voice on several identities",
    ReviewKind.SPOOF_SUSPECTED: "Countermeasure doubts the enrolment audio (synthetic or converted?)",
}

QUALITY_ROWS = (
    ("duration_s", "Audio length", "s", 1),
    ("net_speech_s", "Net speech", "s", 1),
    ("snr_db", "Signal-to-noise ratio", "dB", 1),
    ("clipping_ratio", "Clipped samples", "%", 2),
    ("sample_rate", "Sample rate", "Hz", 0),
    ("codec", "Codec", "", 0),
    ("channel", "Channel", "", 0),
)


def reason_text(code: str) -> str:
    return REASON_TEXT.get(code, code.replace("_", " ").capitalize() + ".")


def rounded(value: float | None, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}"


def quality_rows(quality: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value with unit) per known quality measure, then anything else as it came."""
    if not quality:
        return []
    rows = []
    for key, label, unit, digits in QUALITY_ROWS:
        if key not in quality:
            continue
        value = quality[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = value * 100 if unit == "%" else value
            text = f"{shown:,.{digits}f}" + (f" {unit}" if unit else "")
        else:
            text = str(value)
        rows.append((label, text))
    known = {k for k, *_ in QUALITY_ROWS}
    rows.extend((key.replace("_", " "), str(value)) for key, value in quality.items() if key not in known)
    return rows


def scale_name(threshold_scale: str | None, norm: str | None) -> str:
    """What a score decided on `threshold_scale` is called on the review desk (charts, tables, detail):
    the calibrated LLR, or the score the thresholds were pinned on (raw or normalised cosine)."""
    if threshold_scale == Scale.LLR:
        return "calibrated LLR"
    return "raw cosine" if (norm or "none") == "none" else f"{norm}-normalised score"


@dataclass(frozen=True)
class ScoredRow:
    channel: str | None
    decision: str
    score: float  # on the scale its thresholds are on (the LLR where threshold_scale is "llr")
    accept: float
    reject: float
    norm: str | None
    threshold_scale: str | None = None


@dataclass
class ChannelChart:
    channel: str
    norm: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    thresholds: tuple[Threshold, ...] = ()
    other_thresholds: int = 0  # calls decided with another pair (poor audio: stricter thresholds)
    threshold_scale: str | None = None

    @property
    def scale_label(self) -> str:
        scale = scale_name(self.threshold_scale, self.norm)
        return f"{scale} ({self.channel} channel), the scale its thresholds apply to"


def charts_by_channel(rows: Iterable[ScoredRow]) -> list[ChannelChart]:
    """One chart per channel: thresholds drawn are the pair most calls of that channel were decided
    with (thresholds differ per channel and per calibration; mixing them on one axis would draw lines
    that belong to none of the bars)."""
    grouped: dict[str, list[ScoredRow]] = {}
    for row in rows:
        grouped.setdefault(row.channel or "unknown", []).append(row)
    charts = []
    for channel in sorted(grouped, key=lambda c: {"phone": 0, "wideband": 1}.get(c, 2)):
        members = grouped[channel]
        pair, _ = Counter((r.accept, r.reject) for r in members).most_common(1)[0]
        norm, _ = Counter(r.norm or "none" for r in members).most_common(1)[0]
        scale, _ = Counter(r.threshold_scale for r in members).most_common(1)[0]
        chart = ChannelChart(channel, norm, threshold_scale=scale)
        for r in members:
            chart.scores.setdefault(r.decision, []).append(r.score)
        chart.thresholds = (Threshold("reject", pair[1]), Threshold("accept", pair[0]))
        chart.other_thresholds = sum(1 for r in members if (r.accept, r.reject) != pair)
        charts.append(chart)
    return charts


def daily_counts(
    rows: Iterable[tuple[datetime, str]], until: date, days: int
) -> tuple[list[date], dict[date, dict[str, int]]]:
    """Decisions per UTC day for the `days` days ending `until` (empty days included)."""
    span = [until - timedelta(days=i) for i in reversed(range(days))]
    first = span[0]
    counts: dict[date, dict[str, int]] = {}
    for created_at, decision in rows:
        day = created_at.date()
        if first <= day <= until:
            by = counts.setdefault(day, {})
            by[decision] = by.get(decision, 0) + 1
    return span, counts
