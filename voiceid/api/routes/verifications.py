from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.schemas import VerificationPageOut, VerificationRecord
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.root import VoiceIdService
from voiceid.services.score_log import LEADING_COLUMNS, export_csv, parse_filter
from voiceid.services.views import Role
from voiceid.statuses import AdaptationState
from voiceid.storage.repositories import VerificationFilter
from voiceid.verify.decision import Decision, Reason

router = APIRouter(prefix="/v1", tags=["score log"], dependencies=[Depends(require(Role.ANALYST))])

CSV_FIELDS = [
    *LEADING_COLUMNS,
    "accept_threshold",
    "reject_threshold",
    "net_speech_s",
    "reasons",
    "model_version",
    "channel",
    "raw_score",
    "llr",
    "norm",
    "calibration",
    "challenge_status",
    "challenge_prompt",
    "challenge_heard",
    "adaptation",
    "retry_of",
]


# The parameters are text to FastAPI (parse_filter reads them); their schema says what they hold.
NUMBER: dict[str, object] = {"type": "number"}
DECISIONS = [d.value for d in Decision]
REASONS = [r.value for r in Reason]
ADAPTATION_STATES = [a.value for a in AdaptationState]


def _enum(values: list[str]) -> dict[str, object]:
    return {"enum": values}


def filters(
    speaker_id: str | None = None,
    decision: str | None = Query(None, json_schema_extra=_enum(DECISIONS)),
    since: str | None = Query(None, description="ISO 8601 time or date, inclusive; without a zone, UTC"),
    until: str | None = Query(
        None, description="ISO 8601 time, exclusive; a bare date (2025-01-31) means up to the end of that day"
    ),
    min_score: str | None = Query(None, description="The normalised score (`score`)", json_schema_extra=NUMBER),
    max_score: str | None = Query(None, description="The normalised score (`score`)", json_schema_extra=NUMBER),
    min_decided: str | None = Query(
        None,
        description="The value the call's thresholds were applied to: `llr` where `threshold_scale` is llr, "
        "else `score` (what the review desk's Score column shows)",
        json_schema_extra=NUMBER,
    ),
    max_decided: str | None = Query(None, description="As min_decided, at most", json_schema_extra=NUMBER),
    reason: str | None = Query(
        None,
        description="Only decisions that give this reason, e.g. WATCHLIST_MATCH",
        json_schema_extra=_enum(REASONS),
    ),
    cm_flagged: str | None = Query(
        None,
        description="true: only calls the countermeasure flagged; false: only calls it scored and passed "
        "(calls where it was skipped or off match neither)",
        json_schema_extra={"type": "boolean"},
    ),
    adapted: str | None = Query(
        None,
        description="true: only accepted calls that adapted their speaker's voiceprint (VOICEID_ADAPTATION), "
        "taken out again since or not; false: only calls that never did",
        json_schema_extra={"type": "boolean"},
    ),
    adaptation: str | None = Query(
        None,
        description="ADAPTED: only calls still in the voiceprint they adapted; REVERTED: only calls taken out "
        "again (by an analyst, a watchlist flag, a linked-voice alert or retention)",
        json_schema_extra=_enum(ADAPTATION_STATES),
    ),
) -> VerificationFilter:
    """The score log's filters, parsed by the one parser the review desk uses too (services/score_log.py):
    the same fields mean the same there and here, and a bad value is answered in the same words."""
    given = {
        "speaker_id": speaker_id,
        "decision": decision,
        "since": since,
        "until": until,
        "min_score": min_score,
        "max_score": max_score,
        "min_decided": min_decided,
        "max_decided": max_decided,
        "reason": reason,
        "cm_flagged": cm_flagged,
        "adapted": adapted,
        "adaptation": adaptation,
    }
    return parse_filter({k: v for k, v in given.items() if v is not None})


@router.get("/verifications", response_model=VerificationPageOut)
async def list_verifications(
    f: VerificationFilter = Depends(filters),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = None,
    service: VoiceIdService = Depends(get_service),
) -> VerificationPageOut:
    page = await run_in_threadpool(service.score_log.page, f, limit, cursor)
    return VerificationPageOut(
        items=[VerificationRecord.model_validate(v) for v in page.items], next_cursor=page.next_cursor
    )


@router.get("/verifications.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def verifications_csv(
    f: VerificationFilter = Depends(filters), service: VoiceIdService = Depends(get_service)
) -> Response:
    details = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(f).items() if v is not None}
    await run_in_threadpool(audit.record, service.db, AuditAction.SCORE_LOG_EXPORTED, "verifications.csv", details)
    rows = await run_in_threadpool(service.score_log.all, f)
    text = export_csv(rows, CSV_FIELDS)
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="verifications.csv"'},
    )


@router.get("/verifications/{verification_id}", response_model=VerificationRecord)
async def get_verification(verification_id: str, service: VoiceIdService = Depends(get_service)) -> VerificationRecord:
    return VerificationRecord.model_validate(await run_in_threadpool(service.score_log.get, verification_id))
