"""Bearer API keys and roles. Authentication runs as a dependency, and for requests with a body
already in `guard.BodyGuard`, before any of the body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security import audit
from voiceid.security.throttle import FailureThrottle, check_throttle
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


def get_service(request: Request) -> VoiceIdService:
    service: VoiceIdService = request.app.state.service
    return service


def permitted(found: tuple[str, Role], roles: tuple[Role, ...]) -> Principal:
    """The principal of an authenticated key, or FORBIDDEN when its role is not one of `roles`
    (admin may do everything)."""
    allowed = {*roles, Role.ADMIN}
    principal = Principal(*found)
    if principal.role not in allowed:
        raise VoiceIdError(
            ErrorCode.FORBIDDEN,
            f"role '{principal.role}' may not do this; needs one of: {', '.join(sorted(allowed))}",
        )
    return principal


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
    return secret, await authenticate(state.service, throttle, host, secret)


async def authenticate(
    service: VoiceIdService, throttle: FailureThrottle | None, host: str | None, secret: str
) -> tuple[str, Role]:
    """(key id, role) of `secret`, for every transport (HTTP header, a stream's first message): a
    throttled address is refused before the key is looked up, a wrong key counts toward it."""
    check_throttle(throttle, host)
    found = await run_in_threadpool(service.keys.authenticate, secret)
    if found is None:
        if throttle is not None:
            throttle.failed(host)
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "unknown API key")
    return found


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
