"""The analyst review page at /review: server-rendered HTML, a signed session cookie, CSRF tokens.

Sign-in takes an analyst (or admin) API key once and keeps only its id and role in a signed,
HttpOnly, SameSite=Strict cookie; every POST form carries the session's CSRF token. No JavaScript
framework and no CDN: the page must work on an air-gapped fraud desk.
"""

from __future__ import annotations

import csv
import hmac
import io
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Select, select
from starlette.concurrency import run_in_threadpool

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.export import safe_row
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
from voiceid.security.throttle import FailureThrottle
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.fraud_desk import AttemptDetail
from voiceid.services.review_sessions import ReviewSessions
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.statuses import ReviewKind, ReviewStatus
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import load_or_create_key_file
from voiceid.storage.models import Verification
from voiceid.verify.decision import Decision, Reason

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/review", include_in_schema=False)

SESSION_COOKIE = "voiceid_review"
LOGIN_COOKIE = "voiceid_review_login"
SECRET_FILE = "review-session.key"
PAGE_SIZE = 50
HISTOGRAM_LIMIT = 50_000  # newest rows plotted; enough for a shape, bounded for a busy log
ANALYST_ROLES = {Role.ANALYST, Role.ADMIN}
MAX_CHART_DAYS = 120  # the decisions-per-day chart covers the retention window, up to this many days


@dataclass(frozen=True)
class ReviewSession:
    key_id: str
    role: str
    csrf: str
    session_id: str


@lru_cache(maxsize=8)
def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="voiceid-review-session")


def _secret(service: VoiceIdService) -> bytes:
    configured = service.settings.session_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_key_file(service.settings.data_dir / SECRET_FILE)


def _service(request: Request) -> VoiceIdService:
    service: VoiceIdService = request.app.state.service
    return service


async def _session(request: Request) -> ReviewSession | None:
    service = _service(request)
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(_secret(service)).loads(raw, max_age=service.settings.review_session_max_age_s)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("r") not in {r.value for r in ANALYST_ROLES} or "s" not in data:
        return None
    # The signature proves the cookie was issued here; the database says it is still valid
    # (not signed out, its key not deleted).
    if not await run_in_threadpool(ReviewSessions(service.ctx).is_live, str(data["s"]), str(data["k"])):
        return None
    audit.set_actor(f"review:{data['k']}")  # who the audit trail names for this request
    return ReviewSession(str(data["k"]), str(data["r"]), str(data["c"]), str(data["s"]))


def _to_login() -> RedirectResponse:
    return RedirectResponse("/review/login", status_code=303)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _checked_form(request: Request, session: ReviewSession) -> dict[str, str] | None:
    """The form fields, or None when the CSRF token is missing or wrong."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return form if hmac.compare_digest(form.get("csrf", ""), session.csrf) else None


async def _signed_post(request: Request) -> tuple[ReviewSession, dict[str, str]] | Response:
    """(session, form) for a POST from a signed-in analyst with the right CSRF token, or the answer
    to send instead: the sign-in page without a session, 403 with a bad token."""
    session = await _session(request)
    if session is None:
        return _to_login()
    form = await _checked_form(request, session)
    if form is None:
        return _forbidden(request, "Invalid form token.")
    return session, form


def _forbidden(request: Request, message: str) -> HTMLResponse:
    return _error_page(request, None, message, 403)


def _error_page(request: Request, session: ReviewSession | None, message: str, status_code: int) -> HTMLResponse:
    """The desk's error page, inside the signed-in layout (the JSON API answers with its error body)."""
    return templates.TemplateResponse(
        request, "error.html", {"message": message, "session": session}, status_code=status_code
    )


def _render(
    request: Request, name: str, session: ReviewSession, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": session, **context}, status_code=status_code)


# --- sign in / out ----------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    # Login CSRF: the form token must match a random cookie set with the form (double submit).
    token = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request, "login.html", {"csrf": token, "error": error, "session": None}, status_code=401 if error else 200
    )
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/review")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
        return _forbidden(request, "The sign-in form expired; reload it and try again.")
    service = _service(request)
    host = request.client.host if request.client else None
    throttle: FailureThrottle | None = getattr(request.app.state, "auth_throttle", None)  # set by create_app
    if throttle is not None and throttle.retry_after(host) is not None:
        page = await login_page(request, error="Too many failed sign-ins from this address; try again later.")
        page.status_code = 429
        return page
    found = await run_in_threadpool(service.keys.authenticate, form.get("api_key", "").strip())
    if found is None or found[1] not in ANALYST_ROLES:
        if throttle is not None:
            throttle.failed(host)
        return await login_page(request, error="That key is not an analyst or admin key.")
    key_id, role = found
    session_id = await run_in_threadpool(ReviewSessions(service.ctx).open, key_id)
    cookie = _serializer(_secret(service)).dumps(
        {"k": key_id, "r": role.value, "c": secrets.token_urlsafe(24), "s": session_id}
    )
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=service.settings.review_session_max_age_s,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/review",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/review")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await _session(request)
    if session is not None and await _checked_form(request, session) is None:
        return _forbidden(request, "Invalid form token.")
    if session is not None:
        await run_in_threadpool(ReviewSessions(_service(request).ctx).close, session.session_id)
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path="/review")
    return response


@router.get("/static/review.css")
async def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "review.css", media_type="text/css")


# --- attempts ---------------------------------------------------------------------------------

FILTER_FIELDS = ("speaker_id", "decision", "reason", "cm", "since", "until", "min_score", "max_score")
CM_FILTER = {"flagged": True, "passed": False}  # the attempts page's "Spoof check" select


def _parse_filters(params: dict[str, str]) -> tuple[repo.VerificationFilter, dict[str, str], str | None]:
    """(filter, the non-empty values to echo back into the form and links, an error message)."""
    values = {k: params[k].strip() for k in FILTER_FIELDS if params.get(k, "").strip()}
    try:
        decision = values.get("decision")
        if decision is not None:
            Decision(decision)
        reason = values.get("reason")
        if reason is not None:
            Reason(reason)
        cm = values.get("cm")
        if cm is not None and cm not in CM_FILTER:
            raise ValueError(f"spoof check must be one of {', '.join(CM_FILTER)}")

        def when(name: str, extra: timedelta = timedelta(0)) -> datetime | None:
            raw = values.get(name)
            if raw is None:
                return None
            parsed = datetime.fromisoformat(raw)
            # A bare date (the form's date input) "until 2025-01-31" means up to the end of that day.
            if len(raw) == 10:
                parsed += extra
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

        def number(name: str) -> float | None:
            raw = values.get(name)
            return None if raw is None else float(raw)

        f = repo.VerificationFilter(
            speaker_ref=values.get("speaker_id"),
            decision=decision,
            since=when("since"),
            until=when("until", timedelta(days=1)),
            min_score=number("min_score"),
            max_score=number("max_score"),
            reason=reason,
            cm_flagged=None if cm is None else CM_FILTER[cm],
        )
    except (ValueError, OverflowError) as exc:
        # OverflowError: "until 9999-12-31" plus the one day that makes a bare date inclusive.
        return repo.VerificationFilter(), values, f"Invalid filter: {exc}"
    return f, values, None


def _chart_data(service: VoiceIdService, f: repo.VerificationFilter) -> tuple[list[ChannelChart], str]:
    """The per-channel histograms and the decisions-per-day chart of the filtered attempts."""
    now = service.clock()
    days = max(1, min(MAX_CHART_DAYS, math.ceil(service.settings.attempt_retention_days)))
    with service.db.transaction() as session:
        scored = repo._filtered(
            cast(
                Select[Any],
                select(
                    Verification.channel,
                    Verification.decision,
                    Verification.score,
                    Verification.llr,
                    Verification.accept_threshold,
                    Verification.reject_threshold,
                    Verification.threshold_scale,
                    Verification.norm,
                ),
            ),
            f,
        )
        rows = session.execute(
            scored.where(Verification.score.is_not(None), Verification.accept_threshold.is_not(None))
            .order_by(Verification.created_at.desc())
            .limit(HISTOGRAM_LIMIT)
        ).all()
        per_day = repo._filtered(cast(Select[Any], select(Verification.created_at, Verification.decision)), f)
        day_rows = session.execute(
            per_day.where(Verification.created_at >= now - timedelta(days=days))
            .order_by(Verification.created_at.desc())
            .limit(HISTOGRAM_LIMIT)
        ).all()
    # Each row on the scale its thresholds live on: the calibrated LLR (the product's default), or
    # the score where the deployment runs uncalibrated.
    charts = charts_by_channel(
        ScoredRow(
            r.channel,
            r.decision,
            float(r.llr) if r.threshold_scale == "llr" and r.llr is not None else float(r.score),
            float(r.accept_threshold),
            float(r.reject_threshold),
            "calibrated LLR" if r.threshold_scale == "llr" else r.norm,
        )
        for r in rows
    )
    span, counts = daily_counts(((r.created_at, r.decision) for r in day_rows), now.date(), days)
    return charts, daily_svg(counts, span)


@router.get("", response_class=HTMLResponse)
async def attempts(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    service = _service(request)
    params = dict(request.query_params)
    f, values, error = _parse_filters(params)
    cursor = params.get("cursor") or None
    context: dict[str, Any] = {
        "filters": values,
        "decisions": [d.value for d in Decision],
        "reasons": [r.value for r in Reason],
        "query": urlencode(values),
        "page": None,
        "charts": [],
        "daily": None,
        "next_query": None,
    }
    if error is None:
        try:
            page = await run_in_threadpool(service.score_log.page, f, PAGE_SIZE, cursor)
        except VoiceIdError as exc:
            error = exc.message
    if error is not None:
        # A filter that cannot be applied shows nothing: rows or charts of the *unfiltered* log next to
        # a form that still shows the filter would be read as the filtered result.
        return templates.TemplateResponse(
            request, "attempts.html", {"session": session, **context, "error": error}, status_code=422
        )
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
    return _render(request, "attempts.html", session, error=None, **context)


@router.get("/export.csv")
async def export_csv(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    service = _service(request)
    f, values, error = _parse_filters(dict(request.query_params))
    if error:
        return _error_page(request, session, error, 422)
    await run_in_threadpool(audit.record, service.db, AuditAction.SCORE_LOG_EXPORTED, "review:export.csv", values)
    rows = await run_in_threadpool(service.score_log.all, f)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["verification_id", "created_at", "speaker_id", "decision", "score", "reasons", "watchlist_hits"])
    for v in rows:
        hits = " ".join(
            f"{h['label']}:llr={h.get('llr', '')}:cos={h.get('raw_score', h.get('score'))}" for h in v.watchlist_hits
        )
        writer.writerow(
            safe_row(
                [
                    v.verification_id,
                    v.created_at.isoformat(),
                    v.speaker_id,
                    v.decision,
                    v.score,
                    " ".join(v.reasons),
                    hits,
                ]
            )
        )
    return Response(
        out.getvalue(), media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="attempts.csv"'}
    )


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
async def attempt(request: Request, verification_id: str) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    try:
        detail = await run_in_threadpool(_service(request).desk.attempt, verification_id)
    except VoiceIdError as exc:
        return _error_page(request, session, exc.message, 404)
    return _render(request, "attempt.html", session, error=None, notice=None, **_attempt_context(detail))


@router.post("/attempts/{verification_id}/flag")
async def flag(request: Request, verification_id: str) -> Response:
    signed = await _signed_post(request)
    if isinstance(signed, Response):
        return signed
    session, form = signed
    desk = _service(request).desk
    try:
        view = await run_in_threadpool(
            desk.add_from_verification, verification_id, form.get("label", ""), form.get("note"), session.key_id
        )
    except VoiceIdError as exc:
        try:
            detail = await run_in_threadpool(desk.attempt, verification_id)
        except VoiceIdError:
            return _error_page(request, session, exc.message, 404)
        status = 422 if exc.code is ErrorCode.INVALID_REQUEST else 409
        return _render(
            request, "attempt.html", session, status, error=exc.message, notice=None, **_attempt_context(detail)
        )
    if not view.created:
        # Flagging is idempotent: say so instead of pretending a second entry was made.
        detail = await run_in_threadpool(desk.attempt, verification_id)
        notice = f"This attempt is already part of the watchlist voice \u201c{view.label}\u201d; nothing changed."
        return _render(request, "attempt.html", session, error=None, notice=notice, **_attempt_context(detail))
    return RedirectResponse("/review/watchlist", status_code=303)


@router.get("/attempts/{verification_id}/linked", response_class=HTMLResponse)
async def voice_cluster(request: Request, verification_id: str) -> Response:
    """The voice cluster of one attempt: every identity and call its voice was heard on."""
    session = await _session(request)
    if session is None:
        return _to_login()
    try:
        found = await run_in_threadpool(_service(request).desk.linked, verification_id)
    except VoiceIdError as exc:
        status = 404 if exc.code is ErrorCode.VERIFICATION_NOT_FOUND else 409
        return _error_page(request, session, exc.message, status)
    by_identity: dict[str, list[Link]] = {}
    for link in found.links:
        by_identity.setdefault(link.speaker_ref, []).append(link)
    return _render(request, "linked.html", session, found=found, v=found.verification, by_identity=by_identity)


# --- watchlist and review queue -------------------------------------------------------------------


@router.get("/watchlist", response_class=HTMLResponse)
async def watchlist_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    entries = await run_in_threadpool(_service(request).desk.list_watchlist)
    return _render(request, "watchlist.html", session, entries=entries)


def _confirm(request: Request, session: ReviewSession, **context: Any) -> HTMLResponse:
    return _render(request, "confirm.html", session, **context)


@router.get("/watchlist/{entry_id}/delete", response_class=HTMLResponse)
async def confirm_delete_entry(request: Request, entry_id: str) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    try:
        entry = await run_in_threadpool(_service(request).desk.watchlist_entry, entry_id)
    except VoiceIdError as exc:
        return _error_page(request, session, exc.message, 404)
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
async def delete_entry(request: Request, entry_id: str) -> Response:
    signed = await _signed_post(request)
    if isinstance(signed, Response):
        return signed
    session, form = signed
    if form.get("confirm") != "yes":  # only the confirmation page's button removes
        return RedirectResponse(f"/review/watchlist/{entry_id}/delete", status_code=303)
    try:
        await run_in_threadpool(_service(request).desk.delete_watchlist_entry, entry_id)
    except VoiceIdError as exc:
        return _error_page(request, session, exc.message, 404)
    return RedirectResponse("/review/watchlist", status_code=303)


QUEUE_STATUSES = (*(s.value for s in ReviewStatus), "ALL")


@router.get("/queue", response_class=HTMLResponse)
async def queue_page(request: Request, status: str = "OPEN") -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    if status not in QUEUE_STATUSES:
        return templates.TemplateResponse(
            request,
            "queue.html",
            {
                "session": session,
                "items": [],
                "status": status,
                "statuses": QUEUE_STATUSES,
                "kinds": KIND_TEXT,
                "error": f"Unknown status {status!r}; choose one of {', '.join(QUEUE_STATUSES)}.",
            },
            status_code=422,
        )
    items = await run_in_threadpool(
        _service(request).desk.review_queue, None if status == "ALL" else ReviewStatus(status)
    )
    return _render(
        request, "queue.html", session, items=items, status=status, statuses=QUEUE_STATUSES, kinds=KIND_TEXT, error=None
    )


@router.get("/queue/{item_id}/reject", response_class=HTMLResponse)
async def confirm_reject(request: Request, item_id: str) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    try:
        item = await run_in_threadpool(_service(request).desk.review_item, item_id)
    except VoiceIdError:
        item = None
    if item is None or item.status != ReviewStatus.OPEN:
        return _error_page(request, session, f"no open review item {item_id!r}", 404)
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
async def resolve(request: Request, item_id: str) -> Response:
    signed = await _signed_post(request)
    if isinstance(signed, Response):
        return signed
    session, form = signed
    approve = form.get("action") == "approve"
    if not approve and form.get("confirm") != "yes":  # rejecting erases: only from the confirmation page
        return RedirectResponse(f"/review/queue/{item_id}/reject", status_code=303)
    try:
        await run_in_threadpool(_service(request).desk.resolve, item_id, approve, session.key_id)
    except VoiceIdError as exc:
        return _error_page(request, session, exc.message, 409)
    return RedirectResponse("/review/queue", status_code=303)
