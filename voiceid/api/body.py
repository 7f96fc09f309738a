"""Reading raw audio bodies with the upload limit enforced while streaming, and the aggregate
bound on audio bytes held across all requests of the process.

Each upload is bounded (VOICEID_MAX_UPLOAD_BYTES, VOICEID_BODY_TIMEOUT_S), but forty slow 16 MiB
uploads held at once still added 650 MB before their 408s: `UploadBudget` counts the bytes every
request in progress has buffered and refuses an upload (503 OVERLOADED with Retry-After) when the
total is at VOICEID_MAX_BUFFERED_UPLOAD_BYTES: a new one before it is read, one in progress at the
chunk that would pass the bound. A request's bytes stay counted until its
response is sent (the decoder still holds them), released by `guard.BodyGuard`.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from voiceid.audio.decode import (
    ALAW_TYPES,
    CONTAINER_TYPES,
    L16_TYPES,
    MULAW_TYPES,
    SUPPORTED_CONTENT_TYPES,
    parse_content_type,
)
from voiceid.errors import ErrorCode, VoiceIdError

# Where the bytes a request has reserved in the budget are noted (the request's ASGI state), so the
# middleware releases them when the response is over, however the handler ended.
RESERVED_STATE = "voiceid_upload_reserved"


class UploadBudget:
    """Buffered upload bytes across requests (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, n: int) -> None:
        if self.used + n > self.limit:
            raise VoiceIdError(
                ErrorCode.OVERLOADED,
                f"{self.used} bytes of uploads are already being received (VOICEID_MAX_BUFFERED_UPLOAD_BYTES); "
                "retry later",
                retry_after_s=1,
            )
        self.used += n

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)

    @property
    def full(self) -> bool:
        return self.used >= self.limit


def _reserve(request: Request, n: int) -> None:
    budget: UploadBudget | None = getattr(request.app.state, "upload_budget", None)
    if budget is None or n <= 0:
        return
    budget.reserve(n)
    state = request.scope.setdefault("state", {})
    state[RESERVED_STATE] = state.get(RESERVED_STATE, 0) + n


KNOWN_MEDIA_TYPES = CONTAINER_TYPES | MULAW_TYPES | ALAW_TYPES | L16_TYPES | {"application/octet-stream"}


async def read_audio(request: Request, max_bytes: int, timeout_s: float | None = None) -> tuple[bytes, str | None]:
    """(body, content type). Rejects an unknown media type before reading, stops reading as soon as
    the body passes `max_bytes` so an oversized upload never sits in memory whole, and gives up
    (408) when the whole body has not arrived within `timeout_s` (a trickled upload holds a
    connection and a buffer for as long as the client likes otherwise)."""
    content_type = request.headers.get("content-type")
    media_type, _ = parse_content_type(content_type)
    if media_type not in KNOWN_MEDIA_TYPES:
        raise VoiceIdError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"content type '{content_type or ''}' is not supported; use one of: {SUPPORTED_CONTENT_TYPES}",
        )
    too_large = VoiceIdError(ErrorCode.PAYLOAD_TOO_LARGE, f"the upload limit is {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    budget: UploadBudget | None = getattr(request.app.state, "upload_budget", None)
    if budget is not None and budget.full:
        _reserve(request, 1)  # refused before a byte is read: OVERLOADED with Retry-After
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes:
                    raise too_large
                # Counted as they arrive (what is held, not what is declared: a client declaring
                # 16 MiB and sending 1 KiB holds 1 KiB), released when the response is over.
                _reserve(request, len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise VoiceIdError(
            ErrorCode.REQUEST_TIMEOUT, f"the body did not arrive within {timeout_s:g} s ({total} bytes received)"
        ) from None
    return b"".join(chunks), content_type
