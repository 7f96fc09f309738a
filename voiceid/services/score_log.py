"""The score log: every logged verification, read back as views (the API's /v1/verifications, the
fraud desk's lists, charts and exports), and the one parser of its filters both of them use.
Read-only; the verification path writes the rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.export import csv_text
from voiceid.services.views import VerificationPage, VerificationView
from voiceid.statuses import AdaptationState
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database
from voiceid.verify.decision import Decision, Reason

# The filters of the score log, by their query-parameter names (the API's and the review desk's).
# `cm` is the review form's spelling of `cm_flagged` (a select: flagged / passed). `adapted`: the call
# adapted a voiceprint (true, whether taken out since or not) or never did (false); `adaptation`: exactly
# ADAPTED (still in the voiceprint) or REVERTED (taken out again), the review form's select.
FILTER_PARAMS = (
    "speaker_id",
    "decision",
    "reason",
    "cm_flagged",
    "cm",
    "adapted",
    "adaptation",
    "since",
    "until",
    "min_score",
    "max_score",
    "min_decided",
    "max_decided",
)
CM_CHOICES = {"flagged": True, "passed": False}
# What the API accepted as a boolean before this parser (pydantic's spellings), any case.
BOOLEANS = {
    **dict.fromkeys(("true", "t", "yes", "y", "on", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "off", "0"), False),
}
DATE_EXAMPLE = "a date such as 2025-01-31 or a time such as 2025-01-31T09:30:00Z"


def given_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The filter parameters present and not blank, stripped (what a form echoes back)."""
    return {k: params[k].strip() for k in FILTER_PARAMS if params.get(k, "").strip()}


def parse_filter(params: Mapping[str, str], labels: Mapping[str, str] | None = None) -> repo.VerificationFilter:
    """The filter the query parameters ask for, or INVALID_REQUEST naming every bad field in words
    (`labels`: what the caller calls each parameter, e.g. the form's labels).

    Times without a zone are UTC. `until` is exclusive; a bare date means up to the end of that day
    ("until 2025-01-31" includes the 31st), as a date picker means it."""
    labels = labels or {}
    values = given_filters(params)
    problems: list[str] = []

    def name(key: str) -> str:
        return f"\u201c{labels.get(key, key)}\u201d"

    def choice(key: str, allowed: Sequence[str]) -> str | None:
        raw = values.get(key)
        if raw is not None and raw not in allowed:
            problems.append(f"{name(key)} must be one of {', '.join(allowed)} (got \u201c{raw}\u201d)")
            return None
        return raw

    def when(key: str, bare_date_adds: timedelta = timedelta(0)) -> datetime | None:
        raw = values.get(key)
        if raw is None:
            return None
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            problems.append(f"{name(key)} must be {DATE_EXAMPLE} (got \u201c{raw}\u201d)")
            return None
        if len(raw) == 10:  # a bare date
            try:
                parsed += bare_date_adds
            except OverflowError:  # "until 9999-12-31" plus the day that makes it inclusive
                problems.append(f"{name(key)} \u201c{raw}\u201d is past the last date this service can store")
                return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def number(key: str) -> float | None:
        raw = values.get(key)
        if raw is None:
            return None
        try:
            parsed = float(raw)
        except ValueError:
            parsed = math.nan
        if not math.isfinite(parsed):
            problems.append(f"{name(key)} must be a number such as 1.5 or -2 (got \u201c{raw}\u201d)")
            return None
        return parsed

    def boolean(key: str) -> bool | None:
        raw = values.get(key)
        if raw is None:
            return None
        if raw.lower() not in BOOLEANS:
            problems.append(f"{name(key)} must be true or false (got \u201c{raw}\u201d)")
            return None
        return BOOLEANS[raw.lower()]

    decision = choice("decision", [d.value for d in Decision])
    reason = choice("reason", [r.value for r in Reason])
    cm = choice("cm", list(CM_CHOICES))
    cm_flagged = None if cm is None else CM_CHOICES[cm]
    flagged = boolean("cm_flagged")
    if flagged is not None:
        if cm_flagged is not None and cm_flagged != flagged:
            problems.append(f"{name('cm')} and {name('cm_flagged')} disagree")
        else:
            cm_flagged = flagged
    state = choice("adaptation", [a.value for a in AdaptationState])
    adaptation = None if state is None else AdaptationState(state)
    adapted = boolean("adapted")
    if adapted is False and adaptation is not None:  # a state of a call that never adapted
        problems.append(f"{name('adaptation')} and {name('adapted')} disagree")
    f = repo.VerificationFilter(
        speaker_ref=values.get("speaker_id"),
        decision=decision,
        since=when("since"),
        until=when("until", timedelta(days=1)),
        min_score=number("min_score"),
        max_score=number("max_score"),
        reason=reason,
        cm_flagged=cm_flagged,
        adapted=adapted,
        adaptation=adaptation,
        min_decided=number("min_decided"),
        max_decided=number("max_decided"),
    )
    if problems:
        raise VoiceIdError(ErrorCode.INVALID_REQUEST, "Invalid filter: " + "; ".join(problems) + ".")
    return f


def _hits(v: VerificationView) -> str:
    return " ".join(
        f"{h['label']}:llr={h.get('llr', '')}:cos={h.get('raw_score', h.get('score'))}" for h in v.watchlist_hits
    )


# Every column a score-log CSV export may have, and how a logged verification fills it.
CSV_COLUMNS: dict[str, Callable[[VerificationView], object]] = {
    "verification_id": lambda v: v.verification_id,
    "created_at": lambda v: v.created_at.isoformat(),
    "speaker_id": lambda v: v.speaker_id,
    "decision": lambda v: v.decision,
    "score": lambda v: v.score,
    "accept_threshold": lambda v: v.accept_threshold,
    "reject_threshold": lambda v: v.reject_threshold,
    "net_speech_s": lambda v: v.net_speech_s,
    "reasons": lambda v: " ".join(v.reasons),
    "model_version": lambda v: v.model_version,
    "channel": lambda v: v.channel,
    "raw_score": lambda v: v.raw_score,
    "llr": lambda v: v.llr,
    "norm": lambda v: v.norm,
    "calibration": lambda v: v.calibration,
    "challenge_status": lambda v: v.challenge_status,
    "challenge_prompt": lambda v: v.challenge_prompt,
    "challenge_heard": lambda v: v.challenge_heard,
    "watchlist_hits": _hits,
    "decided_score": lambda v: v.decided_score,
    "threshold_scale": lambda v: v.threshold_scale,
    "adaptation": lambda v: v.adaptation,
    "retry_of": lambda v: v.retry_of,
}


# The columns every score-log export starts with (the API's and the review desk's), in this order.
LEADING_COLUMNS = ("verification_id", "created_at", "speaker_id", "decision", "score")


def export_csv(views: Iterable[VerificationView], columns: Sequence[str]) -> str:
    """The verifications as spreadsheet-safe CSV (fraud/export.py) with `columns` of CSV_COLUMNS."""
    fill = [CSV_COLUMNS[c] for c in columns]
    return csv_text(columns, ([get(v) for get in fill] for v in views))


class ScoreLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, verification_id: str) -> VerificationView:
        with self._db.transaction() as session:
            row = repo.get_verification(session, verification_id)
            if row is None:
                raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {verification_id!r}")
            return VerificationView.from_row(row)

    def page(self, filters: repo.VerificationFilter, limit: int, cursor: str | None) -> VerificationPage:
        """One page, newest first; `cursor` is the opaque one the previous page returned."""
        after = None
        if cursor:
            try:
                after = repo.decode_cursor(cursor)
            except (ValueError, UnicodeDecodeError) as exc:
                raise VoiceIdError(ErrorCode.INVALID_REQUEST, "cursor is not one this service issued") from exc
        with self._db.transaction() as session:
            rows, next_cursor = repo.list_verifications(session, filters, limit, after)
            return VerificationPage([VerificationView.from_row(r) for r in rows], next_cursor)

    def all(self, filters: repo.VerificationFilter) -> Sequence[VerificationView]:
        with self._db.transaction() as session:
            return [VerificationView.from_row(r) for r in repo.iter_verifications(session, filters)]

    def scored(self, filters: repo.VerificationFilter, limit: int) -> list[repo.ScoredAttempt]:
        """The newest `limit` scored attempts, each on the scale its thresholds are on (score charts)."""
        with self._db.transaction() as session:
            return repo.scored_attempts(session, filters, limit)

    def decisions_since(
        self, filters: repo.VerificationFilter, since: datetime, limit: int
    ) -> list[tuple[datetime, str]]:
        with self._db.transaction() as session:
            return repo.decisions_since(session, filters, since, limit)
