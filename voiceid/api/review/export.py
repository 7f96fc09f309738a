"""The attempts list as CSV (the filter of the page), written by the one spreadsheet-safe CSV
writer the API's /v1/verifications.csv uses too (fraud/export.py)."""

from __future__ import annotations

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.review.forms import attempt_filter
from voiceid.api.review.layout import desk_router
from voiceid.api.review.session import SignedIn, service_of
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.export import csv_text
from voiceid.services import audit
from voiceid.services.audit import AuditAction

router = desk_router()

CSV_FIELDS = [
    "verification_id",
    "created_at",
    "speaker_id",
    "decision",
    "score",
    "reasons",
    "watchlist_hits",
    # What the page's Score column shows: the value the thresholds were applied to, and its scale.
    "decided_score",
    "threshold_scale",
    "accept_threshold",
    "reject_threshold",
]


@router.get("/export.csv")
async def export_csv(request: Request, session: SignedIn) -> Response:
    service = service_of(request)
    values, f, error = attempt_filter(dict(request.query_params))
    if f is None:
        raise VoiceIdError(ErrorCode.INVALID_REQUEST, error or "Invalid filter.")
    await run_in_threadpool(audit.record, service.db, AuditAction.SCORE_LOG_EXPORTED, "review:export.csv", values)
    rows = await run_in_threadpool(service.score_log.all, f)
    text = csv_text(
        CSV_FIELDS,
        (
            [
                v.verification_id,
                v.created_at.isoformat(),
                v.speaker_id,
                v.decision,
                v.score,
                " ".join(v.reasons),
                " ".join(
                    f"{h['label']}:llr={h.get('llr', '')}:cos={h.get('raw_score', h.get('score'))}"
                    for h in v.watchlist_hits
                ),
                v.decided_score,
                v.threshold_scale,
                v.accept_threshold,
                v.reject_threshold,
            ]
            for v in rows
        ),
    )
    return Response(text, media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="attempts.csv"'})
