from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.schemas import AuditEventOut, AuditPageOut
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(require(Role.ADMIN))])


@router.get("", response_model=AuditPageOut)
async def list_audit(
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="Only events older than this sequence number."),
    action: AuditAction | None = None,
    service: VoiceIdService = Depends(get_service),
) -> AuditPageOut:
    """The audit trail, newest first (admin only). `voiceid audit verify` checks its hash chain."""

    def page() -> list[AuditEventOut]:
        with service.db.transaction() as session:
            rows = audit.list_events(session, limit + 1, before, None if action is None else action.value)
            return [AuditEventOut.model_validate(r) for r in rows]

    items = await run_in_threadpool(page)
    more = len(items) > limit
    items = items[:limit]
    return AuditPageOut(items=items, next_before=items[-1].seq if more and items else None)
