"""Sign in with an analyst or admin API key, sign out. Login CSRF: the form's token must match a
random cookie set with the form (double submit)."""

from __future__ import annotations

import secrets

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from voiceid.api.errors import status_for
from voiceid.api.review.forms import form_fields, same_token
from voiceid.api.review.layout import desk_router, render, to_login
from voiceid.api.review.session import (
    ANALYST_ROLES,
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    close_session,
    current_session,
    open_session,
    secure,
    service_of,
)
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle

router = desk_router()


def _login_form(request: Request, error: VoiceIdError | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        None,
        200 if error is None else status_for(error.code),
        csrf=token,
        error=None if error is None else error.message,
    )
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), path=COOKIE_PATH)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _login_form(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_fields(request)
    if not same_token(form.get("csrf", ""), request.cookies.get(LOGIN_COOKIE, "")):
        raise VoiceIdError(ErrorCode.FORBIDDEN, "The sign-in form expired; reload it and try again.")
    service = service_of(request)
    host = request.client.host if request.client else None
    throttle: FailureThrottle | None = getattr(request.app.state, "auth_throttle", None)  # set by create_app
    if throttle is not None and throttle.retry_after(host) is not None:
        return _login_form(
            request,
            VoiceIdError(ErrorCode.AUTH_THROTTLED, "Too many failed sign-ins from this address; try again later."),
        )
    found = await run_in_threadpool(service.keys.authenticate, form.get("api_key", "").strip())
    if found is None or found[1] not in ANALYST_ROLES:
        if throttle is not None:
            throttle.failed(host)
        return _login_form(request, VoiceIdError(ErrorCode.UNAUTHENTICATED, "That key is not an analyst or admin key."))
    key_id, role = found
    response = RedirectResponse("/review", status_code=303)
    await open_session(request, response, key_id, role)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = to_login()
    session = await current_session(request)
    if session is not None:
        if not same_token((await form_fields(request)).get("csrf", ""), session.csrf):
            raise VoiceIdError(ErrorCode.FORBIDDEN, "Invalid form token; reload the page and try again.")
        await close_session(request, session, response)
    else:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response
