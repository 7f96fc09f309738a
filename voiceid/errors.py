"""Errors are values with stable codes.

The core raises `VoiceIdError`; the API maps each code to an HTTP status in one place
(`voiceid.api.errors`). Integrators match on `code`, never on the message text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # audio front end
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNSUPPORTED_AUDIO = "UNSUPPORTED_AUDIO"
    EMPTY_AUDIO = "EMPTY_AUDIO"
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NO_SPEECH = "NO_SPEECH"
    AUDIO_TOO_SHORT = "AUDIO_TOO_SHORT"
    # model files
    MODEL_FILE_MISSING = "MODEL_FILE_MISSING"
    MODEL_FILE_CORRUPT = "MODEL_FILE_CORRUPT"
    MODEL_VERSION_MISMATCH = "MODEL_VERSION_MISMATCH"
    # service
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    SPEAKER_NOT_FOUND = "SPEAKER_NOT_FOUND"
    SPEAKER_OPTED_OUT = "SPEAKER_OPTED_OUT"
    INVALID_SPEAKER_ID = "INVALID_SPEAKER_ID"
    INVALID_REQUEST = "INVALID_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    OVERLOADED = "OVERLOADED"
    CONFLICT = "CONFLICT"
    ENROLMENT_REFUSED = "ENROLMENT_REFUSED"
    CONFIGURATION_ERROR = "CONFIGURATION_ERROR"
    VERIFICATION_NOT_FOUND = "VERIFICATION_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"  # too many verification attempts for one speaker in the window
    RETRY_NOT_ALLOWED = "RETRY_NOT_ALLOWED"  # ?retry_of= names a verification that cannot be retried
    # telephony
    CALL_NOT_FOUND = "CALL_NOT_FOUND"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    EMBEDDING_NOT_AVAILABLE = "EMBEDDING_NOT_AVAILABLE"  # the attempt's embedding expired or was erased
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # replicas / webhooks (issue 11)
    WEBHOOK_NOT_ALLOWED = "WEBHOOK_NOT_ALLOWED"  # webhooks off, host not allowed, or an inward address
    # keys and authentication (issue 10)
    AUTH_THROTTLED = "AUTH_THROTTLED"
    # hostile traffic: bounded decoding, sniffing, connections, outages (issue 10)
    UNSUPPORTED_SAMPLE_RATE = "UNSUPPORTED_SAMPLE_RATE"
    TOO_MANY_CHANNELS = "TOO_MANY_CHANNELS"
    DECODED_AUDIO_TOO_LARGE = "DECODED_AUDIO_TOO_LARGE"
    CONTENT_TYPE_MISMATCH = "CONTENT_TYPE_MISMATCH"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"  # request line and headers above VOICEID_MAX_HEADER_BYTES (issue 21)
    # presentation-attack detection (issue 12)
    ENROLMENT_SPOOF_SUSPECTED = "ENROLMENT_SPOOF_SUSPECTED"  # enrolment audio replays audio heard for the speaker


class VoiceIdError(Exception):
    """A failure the caller can act on, identified by a stable `code`."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.details:
            body["details"] = self.details
        return body
