"""The attempts list as CSV (the filter of the page), written as the API's /v1/verifications.csv is
(services/score_log.export_csv over the one spreadsheet-safe writer, fraud/export.py)."""

from __future__ import annotations

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.review.forms import attempt_filter
from voiceid.api.review.layout import desk_router
from voiceid.api.review.session import SignedIn, service_of
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.score_log import LEADING_COLUMNS, export_csv

router = desk_router()

CSV_FIELDS = [
    *LEADING_COLUMNS,
    "reasons",
    "watchlist_hits",
    # What the page's Score column shows: the value the thresholds were applied to, and its scale.
    "decided_score",
    "threshold_scale",
    "accept_threshold",
    "reject_threshold",
    "adaptation",  # ADAPTED: the call adapted the speaker's voiceprint; REVERTED: taken out again since
    "retry_of",  # the INCONCLUSIVE call this one retried with more speech (decided at the stricter threshold)
]


@router.get("/export.csv")
async def attempts_csv(request: Request, session: SignedIn) -> Response:
    service = service_of(request)
    values, f, error = attempt_filter(dict(request.query_params))
    if f is None:
        raise VoiceIdError(ErrorCode.INVALID_REQUEST, error or "Invalid filter.")
    await run_in_threadpool(audit.record, service.db, AuditAction.SCORE_LOG_EXPORTED, "review:export.csv", values)
    rows = await run_in_threadpool(service.score_log.all, f)
    text = export_csv(rows, CSV_FIELDS)
    return Response(text, media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="attempts.csv"'})
