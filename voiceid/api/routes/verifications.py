from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.schemas import VerificationPageOut, VerificationRecord
from voiceid.fraud.export import safe_cell
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.storage.repositories import VerificationFilter
from voiceid.verify.decision import Decision, Reason

router = APIRouter(prefix="/v1", tags=["score log"], dependencies=[Depends(require(Role.ANALYST))])

CSV_FIELDS = [
    "verification_id",
    "created_at",
    "speaker_id",
    "decision",
    "score",
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
]


def filters(
    speaker_id: str | None = None,
    decision: Decision | None = None,
    since: datetime | None = Query(None, description="ISO 8601, inclusive"),
    until: datetime | None = Query(None, description="ISO 8601, exclusive"),
    min_score: float | None = None,
    max_score: float | None = None,
    reason: Reason | None = Query(None, description="Only decisions that give this reason, e.g. WATCHLIST_MATCH"),
    cm_flagged: bool | None = Query(
        None,
        description="true: only calls the countermeasure flagged; false: only calls it scored and passed "
        "(calls where it was skipped or off match neither)",
    ),
) -> VerificationFilter:
    return VerificationFilter(
        speaker_ref=speaker_id,
        decision=None if decision is None else decision.value,
        since=_aware(since),
        until=_aware(until),
        min_score=min_score,
        max_score=max_score,
        reason=None if reason is None else reason.value,
        cm_flagged=cm_flagged,
    )


def _aware(value: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC, the zone every stored time is in.
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


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
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for v in rows:
        # Text cells a spreadsheet would read as a formula (a speaker id may start with "-") are
        # escaped as the review desk's export escapes them (fraud/export.py); numbers stay numbers.
        writer.writerow(
            {
                key: safe_cell(value)
                for key, value in {
                    "verification_id": v.verification_id,
                    "created_at": v.created_at.isoformat(),
                    "speaker_id": v.speaker_id,
                    "decision": v.decision,
                    "score": "" if v.score is None else v.score,
                    "accept_threshold": v.accept_threshold,
                    "reject_threshold": v.reject_threshold,
                    "net_speech_s": "" if v.net_speech_s is None else v.net_speech_s,
                    "reasons": " ".join(v.reasons),
                    "model_version": v.model_version,
                    "channel": v.channel or "",
                    "raw_score": "" if v.raw_score is None else v.raw_score,
                    "llr": "" if v.llr is None else v.llr,
                    "norm": v.norm or "",
                    "calibration": v.calibration or "",
                    "challenge_status": v.challenge_status or "",
                    "challenge_prompt": v.challenge_prompt or "",
                    "challenge_heard": v.challenge_heard or "",
                }.items()
            }
        )
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="verifications.csv"'},
    )


@router.get("/verifications/{verification_id}", response_model=VerificationRecord)
async def get_verification(verification_id: str, service: VoiceIdService = Depends(get_service)) -> VerificationRecord:
    return VerificationRecord.model_validate(await run_in_threadpool(service.score_log.get, verification_id))
