"""Bearer API keys and roles. Authentication runs as a dependency, and for requests with a body
already in `guard.BodyGuard`, before any of the body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle, check_throttle
from voiceid.services import audit
from voiceid.services.api_keys import Principal, authenticate_throttled, permitted
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role

# Declares the Bearer scheme in OpenAPI (so /docs "Authorize" sends the key); the header itself is
# checked below, so a missing or malformed one answers with our own UNAUTHENTICATED body.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    auto_error=False,
    description="An API key from `voiceid keys create` or POST /v1/api-keys: `Authorization: Bearer <key>`.",
)


def get_service(request: Request) -> VoiceIdService:
    service: VoiceIdService = request.app.state.service
    return service


# Where `guard.BodyGuard` leaves (secret, (key id, role)) after authenticating a request with a
# body ahead of FastAPI, so the route's dependency does not look the key up a second time.
AUTHENTICATED_STATE = "voiceid_authenticated"


async def identify(state: Any, host: str | None, authorization: str) -> tuple[str, tuple[str, Role]]:
    """(secret, (key id, role)) of the Bearer key in `authorization`, throttled per client address:
    refused at once while `host` is throttled, and a wrong key counts toward its throttle.
    `state` is the app's state (service and throttle)."""
    throttle: FailureThrottle | None = getattr(state, "auth_throttle", None)
    check_throttle(throttle, host)
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "send 'Authorization: Bearer <api key>'")
    return secret, await authenticate_throttled(state.service.keys, throttle, host, secret)


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: a valid key whose role is one of `roles`; admin may do everything."""

    async def dependency(
        request: Request,
        _declared: HTTPAuthorizationCredentials | None = Security(BEARER),
    ) -> Principal:
        host = request.client.host if request.client else None
        header = request.headers.get("authorization", "")
        early = request.scope.get("state", {}).get(AUTHENTICATED_STATE)
        if early is not None and early[0] == header.partition(" ")[2].strip():
            found: tuple[str, Role] = early[1]
        else:
            found = (await identify(request.app.state, host, header))[1]
        principal = permitted(found, roles)
        request.state.principal = principal
        audit.set_actor(f"key:{principal.key_id}")  # who the audit trail names for this request
        return principal

    return dependency
