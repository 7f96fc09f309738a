"""ErrorCode -> HTTP status, in one place, and the JSON error body `{code, message}`."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from voiceid.errors import ErrorCode, VoiceIdError

log = logging.getLogger(__name__)

STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNSUPPORTED_AUDIO: 422,
    ErrorCode.EMPTY_AUDIO: 422,
    ErrorCode.AUDIO_TOO_LONG: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.NO_SPEECH: 422,
    ErrorCode.AUDIO_TOO_SHORT: 422,
    ErrorCode.MODEL_FILE_MISSING: 503,
    ErrorCode.MODEL_FILE_CORRUPT: 503,
    ErrorCode.MODEL_VERSION_MISMATCH: 409,
    ErrorCode.CONSENT_REQUIRED: 422,
    ErrorCode.SPEAKER_NOT_FOUND: 404,
    ErrorCode.SPEAKER_OPTED_OUT: 409,
    ErrorCode.INVALID_SPEAKER_ID: 422,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.VERIFICATION_NOT_FOUND: 404,
    ErrorCode.CALL_NOT_FOUND: 404,
    ErrorCode.INVALID_MESSAGE: 422,
    ErrorCode.EMBEDDING_NOT_AVAILABLE: 409,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.RETRY_NOT_ALLOWED: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ENROLMENT_REFUSED: 409,
    ErrorCode.ENROLMENT_SPOOF_SUSPECTED: 422,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.CONFIGURATION_ERROR: 500,
    ErrorCode.WEBHOOK_NOT_ALLOWED: 422,
    ErrorCode.AUTH_THROTTLED: 429,
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: 422,
    ErrorCode.TOO_MANY_CHANNELS: 422,
    ErrorCode.DECODED_AUDIO_TOO_LARGE: 413,
    ErrorCode.CONTENT_TYPE_MISMATCH: 415,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.HEADERS_TOO_LARGE: 431,
}


def status_for(code: ErrorCode) -> int:
    return STATUS.get(code, 500)


# `<_io.BytesIO object at 0x7f...>` and the like: meaningless to a caller, and they reveal addresses.
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def error_response(exc: VoiceIdError) -> JSONResponse:
    body = exc.to_dict()
    body["message"] = _OBJECT_REPR.sub("<object>", body["message"])
    headers: dict[str, str] = {}
    if exc.code in (ErrorCode.OVERLOADED, ErrorCode.RATE_LIMITED, ErrorCode.AUTH_THROTTLED):
        headers["Retry-After"] = str(exc.details.get("retry_after_s", 1))
    if exc.code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.code is ErrorCode.DATABASE_UNAVAILABLE:
        headers["Retry-After"] = str(exc.details.get("retry_after_s", 5))
    return JSONResponse(body, status_code=status_for(exc.code), headers=headers)


# What SQLAlchemy raises when the database cannot be reached or answer: connection refused or
# dropped, server restarting, pool exhausted, SQLite locked. A dependency outage, so 503 with
# Retry-After (the client may retry), never 500 (which says the request itself broke us).
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


def database_unavailable(retry_after_s: int) -> VoiceIdError:
    return VoiceIdError(
        ErrorCode.DATABASE_UNAVAILABLE,
        "the database cannot be reached; nothing was changed, retry later",
        retry_after_s=retry_after_s,
    )


def install(app: FastAPI, retry_after_s: int = 5) -> None:
    async def _database_outage(_request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable: %s", type(exc).__name__, exc_info=exc)
        return error_response(database_unavailable(retry_after_s))

    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, _database_outage)

    @app.exception_handler(VoiceIdError)
    async def _voiceid_error(_request: Request, exc: VoiceIdError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        return error_response(VoiceIdError(ErrorCode.INVALID_REQUEST, problems or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code)
        if code is None:
            return JSONResponse({"code": "HTTP_ERROR", "message": str(exc.detail)}, status_code=exc.status_code)
        return error_response(VoiceIdError(code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(VoiceIdError(ErrorCode.INTERNAL_ERROR, "internal error"))
