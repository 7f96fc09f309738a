"""What every HTTP request passes before FastAPI sees it: headers within VOICEID_MAX_HEADER_BYTES
(issue 21, `HeaderGuard`), and for a request with a body (issue 20, `BodyGuard`):

FastAPI reads and parses a declared JSON body *before* it runs the dependencies, authentication
included: a 100 MB unauthenticated JSON body was parsed (+285 MB) before its 401, and bodies
trickled at a byte every two seconds held connections for minutes. This pure ASGI middleware runs
first, on the headers alone:

1. A request to the API (`/v1/...`) that carries a body is authenticated before one byte of the
   body is read: a missing or unknown key gets its 401 (and counts toward the per-address auth
   throttle) with `Connection: close`, and the body is never read. The principal found is left on
   the request so the route's own dependency does not look the key up again.
2. A declared length above the limit gets 413 before reading: VOICEID_JSON_MAX_BYTES for JSON and
   forms, VOICEID_MAX_UPLOAD_BYTES for audio.
3. A JSON or form body is read here, whole, within VOICEID_JSON_BODY_TIMEOUT_S and the size limit
   (408 / 413 otherwise), and handed to the app from memory. Audio bodies stream on to the route,
   which reads them under the upload limits and the process-wide `UploadBudget` (api/body.py);
   their reserved bytes are released here when the response is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceid.api.auth import AUTHENTICATED_STATE, identify
from voiceid.api.body import KNOWN_MEDIA_TYPES, RESERVED_STATE, UploadBudget
from voiceid.api.errors import DATABASE_OUTAGES, database_unavailable, error_response
from voiceid.audio.decode import parse_content_type
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError

API_PREFIX = "/v1/"


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in headers


def _closing(exc: VoiceIdError) -> JSONResponse:
    """The error response, and the connection closes after it: the body the client may still be
    sending is never read."""
    response = error_response(exc)
    response.headers["Connection"] = "close"
    return response


class BodyGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers = Headers(scope=scope)
            if not _has_body(headers):
                await self.app(scope, receive, send)
                return
            try:
                replay = await self._admit(scope, headers, receive)
            except VoiceIdError as exc:
                await _closing(exc)(scope, receive, send)
                return
            except DATABASE_OUTAGES:
                await _closing(database_unavailable(self.settings.retry_after_s))(scope, receive, send)
                return
            if replay is None:
                return  # the client went away mid-body
            await self.app(scope, replay, send)
        finally:
            reserved = scope.get("state", {}).pop(RESERVED_STATE, 0)
            budget: UploadBudget | None = getattr(scope["app"].state, "upload_budget", None)
            if reserved and budget is not None:
                budget.release(reserved)

    async def _admit(self, scope: Scope, headers: Headers, receive: Receive) -> Receive | None:
        settings = self.settings
        if scope["path"].startswith(API_PREFIX):
            client = scope.get("client")
            host = client[0] if client else None
            secret, found = await identify(scope["app"].state, host, headers.get("authorization", ""))
            scope.setdefault("state", {})[AUTHENTICATED_STATE] = (secret, found)
        media_type, _ = parse_content_type(headers.get("content-type"))
        audio = media_type in KNOWN_MEDIA_TYPES
        limit = settings.max_upload_bytes if audio else settings.json_max_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise VoiceIdError(ErrorCode.PAYLOAD_TOO_LARGE, f"the body limit is {limit} bytes")
        if audio:
            return receive  # read by the route (api/body.py: read_audio), after its own checks
        return await _read_whole(receive, limit, settings.json_body_timeout_s)


async def _read_whole(receive: Receive, limit: int, timeout_s: float) -> Receive | None:
    """The body, read within `timeout_s` and `limit`, as a `receive` that hands it over."""
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk: bytes = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise VoiceIdError(ErrorCode.PAYLOAD_TOO_LARGE, f"the body limit is {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise VoiceIdError(
            ErrorCode.REQUEST_TIMEOUT, f"the body did not arrive within {timeout_s:g} s ({total} bytes received)"
        ) from None
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # a disconnect, when the client goes away

    return replay


def header_bytes(scope: Scope) -> int:
    """The size of the request line and headers as they were sent (near enough: separators counted)."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def headers_too_large(limit: int) -> VoiceIdError:
    return VoiceIdError(
        ErrorCode.HEADERS_TOO_LARGE, f"the request line and headers may be at most {limit} bytes", limit=limit
    )


class HeaderGuard:
    """431 for requests whose headers exceed VOICEID_MAX_HEADER_BYTES, whatever server runs the app.
    `voiceid serve` refuses them earlier, before buffering them (api/server.py); this is the bound
    under any other ASGI server and the precise one (a server counts bytes, not headers)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and header_bytes(scope) > self.limit:
            if scope["type"] == "http":
                await _closing(headers_too_large(self.limit))(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1009})  # message too big
            return
        await self.app(scope, receive, send)


def install(app: Any, settings: Settings) -> None:
    app.add_middleware(BodyGuard, settings=settings)
    app.add_middleware(HeaderGuard, limit=settings.max_header_bytes)  # outside: before anything reads them
    app.state.upload_budget = UploadBudget(settings.max_buffered_upload_bytes)
