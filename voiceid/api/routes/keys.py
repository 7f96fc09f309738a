from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.schemas import ApiKeyIn, ApiKeyInfo, ApiKeyOut
from voiceid.services import api_keys
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"], dependencies=[Depends(require(Role.ADMIN))])


def _info(view: api_keys.ApiKeyView, service: VoiceIdService) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=view.key_id,
        role=view.role,
        label=view.label,
        created_at=view.created_at,
        expires_at=view.expires_at,
        last_used_at=view.last_used_at,
        revoked_at=view.revoked_at,
        bootstrap=view.bootstrap,
        active=view.active(service.clock()),
    )


@router.post("", status_code=201, response_model=ApiKeyOut)
async def create_key(body: ApiKeyIn, service: VoiceIdService = Depends(get_service)) -> ApiKeyOut:
    key_id, secret = await run_in_threadpool(service.keys.create, body.role, body.label, body.expires_at)
    return ApiKeyOut(key_id=key_id, role=body.role, key=secret)


@router.get("", response_model=list[ApiKeyInfo])
async def list_keys(service: VoiceIdService = Depends(get_service)) -> list[ApiKeyInfo]:
    """Every key, revoked and expired ones included (never the secret: only its hash is stored)."""
    return [_info(v, service) for v in await run_in_threadpool(api_keys.list_keys, service.db)]


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, service: VoiceIdService = Depends(get_service)) -> Response:
    """Revoke a key: it is refused from the next request on. Idempotent."""
    await run_in_threadpool(api_keys.revoke, service.db, key_id, service.clock())
    return Response(status_code=204)
