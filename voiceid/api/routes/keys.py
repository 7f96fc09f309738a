from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.schemas import ApiKeyIn, ApiKeyOut
from voiceid.service import Role, VoiceIdService

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyOut, dependencies=[Depends(require(Role.ADMIN))])
async def create_key(body: ApiKeyIn, service: VoiceIdService = Depends(get_service)) -> ApiKeyOut:
    key_id, secret = await run_in_threadpool(service.create_api_key, body.role, body.label)
    return ApiKeyOut(key_id=key_id, role=body.role, key=secret)
