"""Bearer API keys and roles. Authentication runs as a dependency, before any body is read."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security import audit
from voiceid.security.throttle import FailureThrottle
from voiceid.service import VoiceIdService
from voiceid.views import Role

# Declares the Bearer scheme in OpenAPI (so /docs "Authorize" sends the key); the header itself is
# checked below, so a missing or malformed one answers with our own UNAUTHENTICATED body.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    auto_error=False,
    description="An API key from `voiceid keys create` or POST /v1/api-keys: `Authorization: Bearer <key>`.",
)


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role


def get_throttle(request: Request) -> FailureThrottle | None:
    throttle: FailureThrottle | None = getattr(request.app.state, "auth_throttle", None)
    return throttle


def check_throttle(throttle: FailureThrottle | None, host: str | None) -> None:
    """Refuse a client address that failed too often, before looking at its credentials: the right
    key sent after a burst of wrong ones is refused too, or throttling would not slow guessing."""
    wait = None if throttle is None else throttle.retry_after(host)
    if wait is not None:
        raise VoiceIdError(
            ErrorCode.AUTH_THROTTLED,
            "too many failed authentications from this address; try again later",
            retry_after_s=max(1, math.ceil(wait)),
        )


def get_service(request: Request) -> VoiceIdService:
    service: VoiceIdService = request.app.state.service
    return service


def authorise(service: VoiceIdService, secret: str, *roles: Role) -> Principal:
    """The key's principal when its role is one of `roles` (admin may do everything); for HTTP
    requests and for streams, whose key arrives in the first message instead of a header."""
    allowed = {*roles, Role.ADMIN}
    found = service.keys.authenticate(secret)
    if found is None:
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "unknown API key")
    principal = Principal(*found)
    if principal.role not in allowed:
        raise VoiceIdError(
            ErrorCode.FORBIDDEN,
            f"role '{principal.role}' may not do this; needs one of: {', '.join(sorted(allowed))}",
        )
    return principal


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: a valid key whose role is one of `roles`; admin may do everything."""

    async def dependency(
        request: Request,
        _declared: HTTPAuthorizationCredentials | None = Security(BEARER),
    ) -> Principal:
        host = request.client.host if request.client else None
        throttle = get_throttle(request)
        check_throttle(throttle, host)
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "send 'Authorization: Bearer <api key>'")
        try:
            principal = await run_in_threadpool(authorise, get_service(request), secret.strip(), *roles)
        except VoiceIdError as exc:
            if throttle is not None and exc.code is ErrorCode.UNAUTHENTICATED:
                throttle.failed(host)
            raise
        request.state.principal = principal
        audit.set_actor(f"key:{principal.key_id}")  # who the audit trail names for this request
        return principal

    return dependency
