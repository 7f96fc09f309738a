"""Call bindings for Asterisk AudioSocket: say who the caller claims to be before the audio comes."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import AnyHttpUrl, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.challenge.policy import CHALLENGE_ID
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.api_keys import Principal
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.statuses import CallMode
from voiceid.telephony_adapter.call_registry import CallRegistry
from voiceid.telephony_adapter.call_session import ROLE_FOR_MODE

router = APIRouter(prefix="/v1/calls", tags=["calls"])


class CallIn(BaseModel):
    speaker_id: str = Field(min_length=1, max_length=128)
    mode: CallMode = CallMode.VERIFY
    webhook_url: AnyHttpUrl | None = Field(None, description="Receives the call (with its outcome) as a JSON POST.")
    challenge_id: str | None = Field(
        None,
        pattern=CHALLENGE_ID.pattern,
        description="verify: a spoken challenge issued for this speaker; the call's audio must say its prompt",
    )
    caller: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="The caller's phone number or SIP AOR: in a SIPREC session, the stream of the participant "
        "whose aor contains it is scored (else the first participant listed).",
    )


class CallOut(BaseModel):
    call_id: str
    speaker_id: str
    mode: str
    status: str = Field(description="BOUND | IN_PROGRESS | COMPLETED | FAILED | ABANDONED")
    webhook_url: str | None
    challenge_id: str | None = None
    caller: str | None = None
    outcome: dict[str, Any] | None = Field(
        description="The stream's final event: a `decision` (its `verification` is the HTTP verification body), "
        "an `enrolment`, or an `error`"
    )
    created_at: str
    updated_at: str


@router.put("/{call_id}", response_model=CallOut)
async def bind_call(
    call_id: uuid.UUID,
    body: CallIn,
    response: Response,
    principal: Principal = Depends(require(Role.IVR, Role.ENROLMENT)),
    service: VoiceIdService = Depends(get_service),
) -> CallOut:
    """Bind an AudioSocket call UUID to a speaker: `verify` needs the ivr role, `enrol` the enrolment role."""
    needed = ROLE_FOR_MODE[body.mode]
    if principal.role not in {needed, Role.ADMIN}:
        raise VoiceIdError(ErrorCode.FORBIDDEN, f"a '{body.mode}' call needs the '{needed}' role")
    webhook = None if body.webhook_url is None else str(body.webhook_url)
    view, created = await run_in_threadpool(
        CallRegistry(service.ctx, service.speakers).bind,
        call_id,
        body.speaker_id,
        body.mode,
        webhook,
        principal.key_id,
        body.challenge_id,
        caller=body.caller,
    )
    response.status_code = 201 if created else 200
    return CallOut.model_validate(view.to_json())


@router.get("/{call_id}", response_model=CallOut)
async def get_call(
    call_id: uuid.UUID,
    principal: Principal = Depends(require(Role.IVR, Role.ENROLMENT)),
    service: VoiceIdService = Depends(get_service),
) -> CallOut:
    """The call and its outcome; readable by the key that bound it (or an admin key) only: an outcome
    names a speaker and a decision, which another tenant's IVR has no business reading."""
    view = await run_in_threadpool(CallRegistry(service.ctx, service.speakers).get, call_id)
    if principal.role is not Role.ADMIN and view.api_key_id != principal.key_id:
        raise VoiceIdError(ErrorCode.FORBIDDEN, f"call {call_id} was bound by another API key")
    return CallOut.model_validate(view.to_json())
