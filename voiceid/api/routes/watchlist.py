"""Watchlist and review queue for fraud analysts (analyst and admin keys only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from voiceid.api.auth import get_service, require
from voiceid.api.body import read_audio
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.api_keys import Principal
from voiceid.services.fraud_desk import FraudDesk
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.statuses import ReviewKind, ReviewStatus

analyst = Depends(require(Role.ANALYST))
router = APIRouter(prefix="/v1", tags=["fraud"], dependencies=[analyst])


class WatchlistFromVerification(BaseModel):
    verification_id: str = Field(max_length=32)
    label: str = Field(
        min_length=1,
        max_length=128,
        description="The fraud voice. A call flagged under an existing label (same channel) is pooled into it.",
    )
    note: str | None = Field(None, max_length=2000)
    entry_id: str | None = Field(
        None, max_length=32, description="Pool the call into this entry instead of the one named by label."
    )


class WatchlistEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    entry_id: str
    label: str
    note: str | None
    source: str = Field(description="verification | audio")
    verification_id: str | None
    speaker_id: str | None = Field(description="The identity the flagged attempt claimed, if any.")
    model_version: str
    created_by: str | None
    created_at: datetime
    channel: str | None = Field(description="phone | wideband: the calibration the entry is screened with.")
    samples: int = Field(description="Flagged calls pooled into this voice.")


class ReviewItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: str
    kind: ReviewKind
    status: ReviewStatus = Field(description="CLOSED: the speaker was erased while the item was open.")
    speaker_id: str
    matched_ref: str = Field(
        description="The other speaker id (duplicates), watchlist entry id, the call that raised a linked alert, or "
        "the speaker itself (SPOOF_SUSPECTED)."
    )
    score: float = Field(
        description="Calibrated LLR (natural log) of the best match; for SPOOF_SUSPECTED the enrolment's pooled "
        "countermeasure margin (nats, below 0 = in doubt)."
    )
    details: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class ResolveIn(BaseModel):
    action: Literal["approve", "reject"]


def desk(service: VoiceIdService = Depends(get_service)) -> FraudDesk:
    return service.desk


WATCHLIST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": WatchlistFromVerification.model_json_schema()},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("/watchlist", status_code=201, response_model=WatchlistEntryOut, openapi_extra=WATCHLIST_BODY)
async def add_watchlist_entry(
    request: Request,
    response: Response,
    label: str | None = Query(None, max_length=128, description="With an audio body"),
    note: str | None = Query(None, max_length=2000, description="With an audio body"),
    entry_id: str | None = Query(None, max_length=32, description="With an audio body: pool into this entry"),
    principal: Principal = Depends(require(Role.ANALYST)),
    fraud: FraudDesk = Depends(desk),
) -> WatchlistEntryOut:
    """Flag an attempt as fraud (JSON `{verification_id, label, note}`), or add a known fraud voice
    from audio (an audio body, with `label` and `note` as query parameters)."""
    if (request.headers.get("content-type") or "").split(";")[0].strip() == "application/json":
        try:
            body = WatchlistFromVerification.model_validate_json(await request.body())
        except ValidationError as exc:
            raise VoiceIdError(ErrorCode.INVALID_REQUEST, str(exc).splitlines()[0]) from exc
        view = await run_in_threadpool(
            fraud.add_from_verification, body.verification_id, body.label, body.note, principal.key_id, body.entry_id
        )
    else:
        if not label:
            raise VoiceIdError(ErrorCode.INVALID_REQUEST, "label (query parameter) is required with an audio body")
        data, content_type = await read_audio(
            request, fraud.ctx.settings.max_upload_bytes, fraud.ctx.settings.body_timeout_s
        )
        view = await run_in_threadpool(
            fraud.add_from_audio, data, content_type, label, note, principal.key_id, entry_id
        )
    if not view.created:
        response.status_code = 200  # already flagged: the same entry, nothing changed
    return WatchlistEntryOut.model_validate(view)


@router.get("/watchlist", response_model=list[WatchlistEntryOut])
async def list_watchlist(fraud: FraudDesk = Depends(desk)) -> list[WatchlistEntryOut]:
    return [WatchlistEntryOut.model_validate(v) for v in await run_in_threadpool(fraud.list_watchlist)]


@router.delete("/watchlist/{entry_id}", status_code=204)
async def delete_watchlist_entry(entry_id: str, fraud: FraudDesk = Depends(desk)) -> Response:
    await run_in_threadpool(fraud.delete_watchlist_entry, entry_id)
    return Response(status_code=204)


@router.get("/review-queue", response_model=list[ReviewItemOut])
async def review_queue(
    status: Literal["OPEN", "REFUSED", "APPROVED", "REJECTED", "CLOSED", "ALL"] = "OPEN",
    fraud: FraudDesk = Depends(desk),
) -> list[ReviewItemOut]:
    items = await run_in_threadpool(fraud.review_queue, None if status == "ALL" else ReviewStatus(status))
    return [ReviewItemOut.model_validate(v) for v in items]


@router.post("/review-queue/{item_id}/resolve", response_model=ReviewItemOut)
async def resolve_review_item(
    item_id: str,
    body: ResolveIn,
    principal: Principal = Depends(require(Role.ANALYST)),
    fraud: FraudDesk = Depends(desk),
) -> ReviewItemOut:
    view = await run_in_threadpool(fraud.resolve, item_id, body.action == "approve", principal.key_id)
    return ReviewItemOut.model_validate(view)


class LinkOut(BaseModel):
    verification_id: str
    speaker_id: str = Field(description="The identity the linked call claimed.")
    channel: str | None
    decision: str
    created_at: datetime
    llr: float = Field(description="Calibrated LLR (natural log), same voice vs different voices.")
    raw_score: float = Field(description="Cosine between the two calls' embeddings, for diagnosis.")
    pooled: bool = Field(
        description="Found in the second pass: scored against this call pooled with its first-pass links."
    )
    scale: Literal["phone", "wideband", "cross"] = Field(
        description="The channel calibration the pair was scored with (cross: one side wideband, one phone)."
    )


class LinkedOut(BaseModel):
    verification_id: str
    speaker_id: str
    channel: str | None
    created_at: datetime
    threshold_llr: float = Field(description="Calls scoring at least this LLR are linked (VOICEID_LINK_LLR_THRESHOLD).")
    identities: list[str] = Field(description="Every identity this voice was heard on, this call's first.")
    identities_in_window: list[str] = Field(description="Those within VOICEID_LINK_ALERT_DAYS of this call.")
    alert: bool = Field(description="identities_in_window reaches VOICEID_LINK_ALERT_IDENTITIES.")
    links: list[LinkOut]


class AdaptationRevertedOut(BaseModel):
    verification_ids: list[str] = Field(description="The calls taken out of the adapted voiceprints.")
    speakers: list[str] = Field(description="The speakers whose adapted voiceprints were rebuilt without them.")


@router.post("/verifications/{verification_id}/unadapt", response_model=AdaptationRevertedOut)
async def unadapt(verification_id: str, fraud: FraudDesk = Depends(desk)) -> AdaptationRevertedOut:
    """Take an accepted call out of the voiceprint it adapted (VOICEID_ADAPTATION): the voiceprint is rebuilt
    from the enrolment voiceprint and the calls still kept, and the reversion is audited. Flagging the call
    to the watchlist does this too. An empty list: the call adapts nothing (any more)."""
    done = await run_in_threadpool(fraud.unadapt, verification_id)
    return AdaptationRevertedOut(verification_ids=done.verification_ids, speakers=done.speakers)


@router.post("/speakers/{speaker_id}/adaptation/revert", response_model=AdaptationRevertedOut)
async def revert_adaptation(speaker_id: str, fraud: FraudDesk = Depends(desk)) -> AdaptationRevertedOut:
    """Take every call out of a speaker's adapted voiceprints: later calls are scored against the enrolment
    voiceprints again, until new high-confidence calls adapt them."""
    done = await run_in_threadpool(fraud.revert_adaptation, speaker_id)
    return AdaptationRevertedOut(verification_ids=done.verification_ids, speakers=done.speakers)


@router.get("/verifications/{verification_id}/linked", response_model=LinkedOut)
async def linked_calls(verification_id: str, fraud: FraudDesk = Depends(desk)) -> LinkedOut:
    """The other retained attempts whose voice matches this one under other claimed identities, with
    calibrated scores (the fraud-ring view)."""
    found = await run_in_threadpool(fraud.linked, verification_id)
    v = found.verification
    return LinkedOut(
        verification_id=v.verification_id,
        speaker_id=v.speaker_id,
        channel=v.channel,
        created_at=v.created_at,
        threshold_llr=found.threshold_llr,
        identities=found.identities,
        identities_in_window=found.identities_in_window,
        alert=found.alert,
        links=[
            LinkOut(
                verification_id=link.verification_id,
                speaker_id=link.speaker_ref,
                channel=link.channel,
                decision=link.decision,
                created_at=link.created_at,
                llr=link.llr,
                raw_score=link.raw_score,
                scale=link.scale,
                pooled=link.pooled,
            )
            for link in found.links
        ],
    )
