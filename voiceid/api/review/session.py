"""Who is signed in to the review desk: a signed cookie naming a database session
(services/review_sessions.py), read by the `ReviewSession` dependency of every desk page.

Sign-in takes an analyst (or admin) API key once and keeps only its id and role in a signed,
HttpOnly, SameSite=Strict cookie; the database says whether that session is still live (not signed
out, its key not revoked, deleted or expired). Every POST form carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from voiceid.services import audit
from voiceid.services.review_sessions import ReviewSessions
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.storage.crypto import load_or_create_key_file

SESSION_COOKIE = "voiceid_review"
LOGIN_COOKIE = "voiceid_review_login"
COOKIE_PATH = "/review"
SECRET_FILE = "review-session.key"
ANALYST_ROLES = frozenset({Role.ANALYST, Role.ADMIN})
# Where the signed-in desk's session is left for the error page's layout (request.state).
SESSION_STATE = "review_session"


@dataclass(frozen=True)
class ReviewSession:
    key_id: str
    role: str
    csrf: str
    session_id: str


class SignInRequired(Exception):
    """No live session: the desk answers with its sign-in page (layout.ReviewRoute)."""


@lru_cache(maxsize=8)
def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="voiceid-review-session")


def _secret(service: VoiceIdService) -> bytes:
    configured = service.settings.session_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_key_file(service.settings.data_dir / SECRET_FILE)


def service_of(request: Request) -> VoiceIdService:
    service: VoiceIdService = request.app.state.service
    return service


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def current_session(request: Request) -> ReviewSession | None:
    """The live session the request's cookie names, or None."""
    service = service_of(request)
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(_secret(service)).loads(raw, max_age=service.settings.review_session_max_age_s)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("r") not in {r.value for r in ANALYST_ROLES} or "s" not in data:
        return None
    # The signature proves the cookie was issued here; the database says it is still valid.
    if not await run_in_threadpool(ReviewSessions(service.ctx).is_live, str(data["s"]), str(data["k"])):
        return None
    audit.set_actor(f"review:{data['k']}")  # who the audit trail names for this request
    return ReviewSession(str(data["k"]), str(data["r"]), str(data["c"]), str(data["s"]))


async def review_session(request: Request) -> ReviewSession:
    """The dependency of every signed-in page: the session, or SignInRequired."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired
    setattr(request.state, SESSION_STATE, session)
    return session


SignedIn = Annotated[ReviewSession, Depends(review_session)]


async def open_session(request: Request, response: Response, key_id: str, role: Role) -> None:
    """Start a session for `key_id` and set its cookie on `response`."""
    service = service_of(request)
    session_id = await run_in_threadpool(ReviewSessions(service.ctx).open, key_id)
    cookie = _serializer(_secret(service)).dumps(
        {"k": key_id, "r": role.value, "c": secrets.token_urlsafe(24), "s": session_id}
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=service.settings.review_session_max_age_s,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path=COOKIE_PATH,
    )


async def close_session(request: Request, session: ReviewSession, response: Response) -> None:
    await run_in_threadpool(ReviewSessions(service_of(request).ctx).close, session.session_id)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
