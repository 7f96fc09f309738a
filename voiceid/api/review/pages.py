"""The desk's pages: the attempts list with its charts, one attempt (flag it as fraud), its voice
cluster, the watchlist and the review queue. Every score is shown on the scale its thresholds are
on (the calibrated LLR, or the cosine where a deployment pins cosine thresholds)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from voiceid.api.errors import status_for
from voiceid.api.review.forms import HIDDEN_FILTERS, SignedForm, attempt_filter
from voiceid.api.review.layout import desk_router, render
from voiceid.api.review.session import ReviewSession, SignedIn, service_of
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.histogram import daily_svg, histogram_svg
from voiceid.fraud.links import Link
from voiceid.fraud.views import (
    KIND_TEXT,
    ChannelChart,
    ScoredRow,
    charts_by_channel,
    daily_counts,
    quality_rows,
    reason_text,
    rounded,
)
from voiceid.services.fraud_desk import AttemptDetail
from voiceid.services.root import VoiceIdService
from voiceid.statuses import ReviewKind, ReviewStatus
from voiceid.storage.repositories import VerificationFilter
from voiceid.verify.decision import Decision, Reason

router = desk_router()

PAGE_SIZE = 50
HISTOGRAM_LIMIT = 50_000  # newest rows plotted; enough for a shape, bounded for a busy log
MAX_CHART_DAYS = 120  # the decisions-per-day chart covers the retention window, up to this many days
QUEUE_STATUSES = (*(s.value for s in ReviewStatus), "ALL")


# --- attempts ---------------------------------------------------------------------------------


def _chart_data(service: VoiceIdService, f: VerificationFilter) -> tuple[list[ChannelChart], str]:
    """The per-channel histograms and the decisions-per-day chart of the filtered attempts."""
    now = service.clock()
    days = max(1, min(MAX_CHART_DAYS, math.ceil(service.settings.attempt_retention_days)))
    charts = charts_by_channel(
        ScoredRow(a.channel, a.decision, a.decided, a.accept_threshold, a.reject_threshold, a.norm, a.threshold_scale)
        for a in service.score_log.scored(f, HISTOGRAM_LIMIT)
    )
    day_rows = service.score_log.decisions_since(f, now - timedelta(days=days), HISTOGRAM_LIMIT)
    span, counts = daily_counts(day_rows, now.date(), days)
    return charts, daily_svg(counts, span)


@router.get("", response_class=HTMLResponse)
async def attempts(request: Request, session: SignedIn) -> Response:
    service = service_of(request)
    params = dict(request.query_params)
    values, f, error = attempt_filter(params)
    context: dict[str, Any] = {
        "filters": values,
        "hidden_filters": {k: values[k] for k in HIDDEN_FILTERS if k in values},
        "decisions": [d.value for d in Decision],
        "reasons": [r.value for r in Reason],
        "query": urlencode(values),
        "page": None,
        "charts": [],
        "daily": None,
        "next_query": None,
        "rounded": rounded,
    }
    if f is not None:
        try:
            page = await run_in_threadpool(service.score_log.page, f, PAGE_SIZE, params.get("cursor") or None)
        except VoiceIdError as exc:
            error = exc.message
    if f is None or error is not None:
        # A filter that cannot be applied shows nothing: rows or charts of the *unfiltered* log next to
        # a form that still shows the filter would be read as the filtered result.
        status = status_for(ErrorCode.INVALID_REQUEST)
        return render(request, "attempts.html", session, status, **context, error=error)
    charts, daily = await run_in_threadpool(_chart_data, service, f)
    context.update(
        page=page,
        charts=[
            (c, histogram_svg(c.scores, c.thresholds, scale_label=c.scale_label, title=f"{c.channel} scores"))
            for c in charts
        ],
        daily=daily,
        next_query=urlencode({**values, "cursor": page.next_cursor}) if page.next_cursor else None,
    )
    return render(request, "attempts.html", session, error=None, **context)


def _attempt_context(detail: AttemptDetail) -> dict[str, Any]:
    v = detail.verification
    return {
        "detail": detail,
        "v": v,
        "quality": quality_rows(v.quality),
        "reasons": [(code, reason_text(code)) for code in v.reasons],
        "rounded": rounded,
    }


@router.get("/attempts/{verification_id}", response_class=HTMLResponse)
async def attempt(request: Request, verification_id: str, session: SignedIn) -> Response:
    detail = await run_in_threadpool(service_of(request).desk.attempt, verification_id)
    return render(request, "attempt.html", session, error=None, notice=None, **_attempt_context(detail))


@router.post("/attempts/{verification_id}/flag")
async def flag(request: Request, verification_id: str, session: SignedIn, form: SignedForm) -> Response:
    desk = service_of(request).desk
    try:
        view = await run_in_threadpool(
            desk.add_from_verification, verification_id, form.get("label", ""), form.get("note"), session.key_id
        )
    except VoiceIdError as exc:
        # The attempt's page again, with the reason it could not be flagged (a missing attempt:
        # the error page, as desk.attempt raises it).
        detail = await run_in_threadpool(desk.attempt, verification_id)
        return render(
            request,
            "attempt.html",
            session,
            status_for(exc.code),
            error=exc.message,
            notice=None,
            **_attempt_context(detail),
        )
    if not view.created:
        # Flagging is idempotent: say so instead of pretending a second entry was made.
        detail = await run_in_threadpool(desk.attempt, verification_id)
        notice = f"This attempt is already part of the watchlist voice \u201c{view.label}\u201d; nothing changed."
        return render(request, "attempt.html", session, error=None, notice=notice, **_attempt_context(detail))
    return RedirectResponse("/review/watchlist", status_code=303)


@router.get("/attempts/{verification_id}/linked", response_class=HTMLResponse)
async def voice_cluster(request: Request, verification_id: str, session: SignedIn) -> Response:
    """The voice cluster of one attempt: every identity and call its voice was heard on."""
    found = await run_in_threadpool(service_of(request).desk.linked, verification_id)
    by_identity: dict[str, list[Link]] = {}
    for link in found.links:
        by_identity.setdefault(link.speaker_ref, []).append(link)
    return render(request, "linked.html", session, found=found, v=found.verification, by_identity=by_identity)


# --- watchlist and review queue -------------------------------------------------------------------


@router.get("/watchlist", response_class=HTMLResponse)
async def watchlist_page(request: Request, session: SignedIn) -> Response:
    entries = await run_in_threadpool(service_of(request).desk.list_watchlist)
    return render(request, "watchlist.html", session, entries=entries)


def _confirm(request: Request, session: ReviewSession, **context: Any) -> HTMLResponse:
    return render(request, "confirm.html", session, **context)


@router.get("/watchlist/{entry_id}/delete", response_class=HTMLResponse)
async def confirm_delete_entry(request: Request, entry_id: str, session: SignedIn) -> Response:
    entry = await run_in_threadpool(service_of(request).desk.watchlist_entry, entry_id)
    return _confirm(
        request,
        session,
        title="Remove watchlist voice",
        question=f"Remove \u201c{entry.label}\u201d ({entry.samples} flagged call(s), {entry.channel or 'phone'}) "
        "from the watchlist? Calls of this voice will no longer be screened. This cannot be undone.",
        action=f"/review/watchlist/{entry_id}/delete",
        fields={},
        button="Remove from watchlist",
        back="/review/watchlist",
    )


@router.post("/watchlist/{entry_id}/delete")
async def delete_entry(request: Request, entry_id: str, form: SignedForm) -> Response:
    if form.get("confirm") != "yes":  # only the confirmation page's button removes
        return RedirectResponse(f"/review/watchlist/{entry_id}/delete", status_code=303)
    await run_in_threadpool(service_of(request).desk.delete_watchlist_entry, entry_id)
    return RedirectResponse("/review/watchlist", status_code=303)


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(request: Request, session: SignedIn, status: str = "OPEN") -> Response:
    context: dict[str, Any] = {"status": status, "statuses": QUEUE_STATUSES, "kinds": KIND_TEXT}
    if status not in QUEUE_STATUSES:
        error = f"Unknown status \u201c{status}\u201d; choose one of {', '.join(QUEUE_STATUSES)}."
        return render(
            request, "queue.html", session, status_for(ErrorCode.INVALID_REQUEST), items=[], error=error, **context
        )
    items = await run_in_threadpool(
        service_of(request).desk.review_queue, None if status == "ALL" else ReviewStatus(status)
    )
    return render(request, "queue.html", session, items=items, error=None, **context)


@router.get("/queue/{item_id}/reject", response_class=HTMLResponse)
async def confirm_reject(request: Request, item_id: str, session: SignedIn) -> Response:
    item = await run_in_threadpool(service_of(request).desk.review_item, item_id)
    if item.status != ReviewStatus.OPEN:
        raise VoiceIdError(ErrorCode.CONFLICT, f"review item {item_id!r} is already {item.status}")
    erases = item.kind != ReviewKind.LINKED_VOICE
    return _confirm(
        request,
        session,
        title="Reject review item",
        question=(
            f"Reject the enrolment of \u201c{item.speaker_id}\u201d? Their voiceprint and enrolment audio "
            "embeddings are erased and they must enrol again. This cannot be undone."
            if erases
            else f"Confirm the linked-voice alert on \u201c{item.speaker_id}\u201d as fraud? No data is erased."
        ),
        action=f"/review/queue/{item_id}/resolve",
        fields={"action": "reject"},
        button="Reject and erase" if erases else "Confirm as fraud",
        back="/review/queue",
    )


@router.post("/queue/{item_id}/resolve")
async def resolve(request: Request, item_id: str, session: SignedIn, form: SignedForm) -> Response:
    approve = form.get("action") == "approve"
    if not approve and form.get("confirm") != "yes":  # rejecting erases: only from the confirmation page
        return RedirectResponse(f"/review/queue/{item_id}/reject", status_code=303)
    await run_in_threadpool(service_of(request).desk.resolve, item_id, approve, session.key_id)
    return RedirectResponse("/review/queue", status_code=303)
