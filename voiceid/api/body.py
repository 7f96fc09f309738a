"""Reading raw audio bodies with the upload limit enforced while streaming."""

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
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise VoiceIdError(
            ErrorCode.REQUEST_TIMEOUT, f"the body did not arrive within {timeout_s:g} s ({total} bytes received)"
        ) from None
    return b"".join(chunks), content_type
