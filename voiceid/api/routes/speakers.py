from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.body import read_audio
from voiceid.api.schemas import ChallengeIssuedOut, ConsentEventOut, SpeakerIn, SpeakerOut
from voiceid.services.api_keys import Principal
from voiceid.services.challenges import check_challenge_id
from voiceid.services.consent import consent_history
from voiceid.services.retries import check_retry_id
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.wire import EnrolmentOut, VerificationOut

router = APIRouter(prefix="/v1/speakers", tags=["speakers"])

AUDIO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in (
                "audio/wav",
                "audio/flac",
                "audio/ogg",
                "audio/basic",
                "audio/x-alaw-basic",
                "audio/L16;rate=8000",
            )
        },
    }
}
enrolment_role = Depends(require(Role.ENROLMENT))
enrolment_principal = Depends(require(Role.ENROLMENT))


@router.put("/{speaker_id}", response_model=SpeakerOut)
async def put_speaker(
    speaker_id: str,
    body: SpeakerIn,
    response: Response,
    principal: Principal = enrolment_principal,
    service: VoiceIdService = Depends(get_service),
) -> SpeakerOut:
    """Create a speaker with their recorded consent (201), or confirm an existing one (200)."""
    consent = body.consent
    view, created = await run_in_threadpool(
        service.speakers.put,
        speaker_id,
        None if consent is None else consent.granted,
        None if consent is None else consent.text_version,
        None if consent is None else consent.channel,
        principal.key_id,
    )
    response.status_code = 201 if created else 200
    return SpeakerOut.model_validate(view)


@router.get("/{speaker_id}", response_model=SpeakerOut, dependencies=[enrolment_role])
async def get_speaker(speaker_id: str, service: VoiceIdService = Depends(get_service)) -> SpeakerOut:
    return SpeakerOut.model_validate(await run_in_threadpool(service.speakers.get, speaker_id))


@router.delete("/{speaker_id}", status_code=204)
async def delete_speaker(
    speaker_id: str, principal: Principal = enrolment_principal, service: VoiceIdService = Depends(get_service)
) -> Response:
    """Erase the speaker and all their biometric data (their data key is destroyed); score-log rows
    (no embeddings) and the consent ledger remain."""
    await run_in_threadpool(service.speakers.delete, speaker_id, principal.key_id)
    return Response(status_code=204)


@router.post(
    "/{speaker_id}/enrolment-audio",
    response_model=EnrolmentOut,
    dependencies=[enrolment_role],
    openapi_extra=AUDIO_BODY,
)
async def enrolment_audio(
    speaker_id: str, request: Request, service: VoiceIdService = Depends(get_service)
) -> EnrolmentOut:
    data, content_type = await read_audio(request, service.settings.max_upload_bytes, service.settings.body_timeout_s)
    step = await run_in_threadpool(service.enrolment.add_audio, speaker_id, data, content_type)
    return EnrolmentOut.model_validate(step)


@router.post("/{speaker_id}/enrolment/reset", response_model=SpeakerOut, dependencies=[enrolment_role])
async def reset_enrolment(speaker_id: str, service: VoiceIdService = Depends(get_service)) -> SpeakerOut:
    return SpeakerOut.model_validate(await run_in_threadpool(service.speakers.reset_enrolment, speaker_id))


@router.post("/{speaker_id}/opt-out", response_model=SpeakerOut)
async def opt_out(
    speaker_id: str, principal: Principal = enrolment_principal, service: VoiceIdService = Depends(get_service)
) -> SpeakerOut:
    """Withdraw consent: biometric data is erased; enrolment needs a new consent PUT."""
    return SpeakerOut.model_validate(await run_in_threadpool(service.speakers.opt_out, speaker_id, principal.key_id))


@router.get("/{speaker_id}/consents", response_model=list[ConsentEventOut])
async def consents(
    speaker_id: str,
    _: Principal = Depends(require(Role.ENROLMENT, Role.ANALYST)),
    service: VoiceIdService = Depends(get_service),
) -> list[ConsentEventOut]:
    """The consent ledger of a speaker, oldest first: every grant, withdrawal and erasure with its
    time, text version, channel and recording key. It outlives the speaker's deletion."""
    events = await run_in_threadpool(consent_history, service.db, speaker_id)
    return [ConsentEventOut.model_validate(e) for e in events]


@router.post("/{speaker_id}/unlock", response_model=SpeakerOut, dependencies=[Depends(require(Role.ADMIN))])
async def unlock(speaker_id: str, service: VoiceIdService = Depends(get_service)) -> SpeakerOut:
    return SpeakerOut.model_validate(await run_in_threadpool(service.speakers.unlock, speaker_id))


@router.post("/{speaker_id}/challenges", response_model=ChallengeIssuedOut, status_code=201)
async def issue_challenge(
    speaker_id: str,
    principal: Principal = Depends(require(Role.IVR)),
    service: VoiceIdService = Depends(get_service),
) -> ChallengeIssuedOut:
    """A new spoken challenge for this speaker: random digits for the IVR to play, single use,
    short-lived. Send its `challenge_id` with the verification of the caller's answer."""
    view = await run_in_threadpool(service.challenges.issue, speaker_id, principal.key_id)
    return ChallengeIssuedOut.model_validate(view)


@router.post("/{speaker_id}/verifications", response_model=VerificationOut, openapi_extra=AUDIO_BODY)
async def verify(
    speaker_id: str,
    request: Request,
    challenge_id: str | None = Query(
        None, description="A challenge issued for this speaker: the audio must say its prompt (issue 22)"
    ),
    retry_of: str | None = Query(
        None,
        description="The verification_id of this call's INCONCLUSIVE answer (SCORE_BETWEEN_THRESHOLDS or "
        "INSUFFICIENT_SPEECH) when the caller was asked for more speech: send the whole call so far (first and "
        "new audio joined). Decided at the stricter retry threshold; once per verification, within "
        "VOICEID_RETRY_WINDOW_S; otherwise 409 RETRY_NOT_ALLOWED with nothing scored",
    ),
    principal: Principal = Depends(require(Role.IVR)),
    service: VoiceIdService = Depends(get_service),
) -> VerificationOut:
    if challenge_id is not None:
        check_challenge_id(challenge_id)  # before the body is read: a malformed id changes nothing
    if retry_of is not None:
        check_retry_id(retry_of)
    data, content_type = await read_audio(request, service.settings.max_upload_bytes, service.settings.body_timeout_s)
    view = await run_in_threadpool(
        service.verifications.verify, speaker_id, data, content_type, principal.key_id, challenge_id, retry_of
    )
    return VerificationOut.model_validate(view)
