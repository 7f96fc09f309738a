"""What each error code means and what the caller should do: the source of the README's error table
(`scripts/error_table.py`) — a test keeps every `ErrorCode` described and the README in step."""

from __future__ import annotations

from voiceid.api.errors import status_for
from voiceid.errors import ErrorCode

ERROR_HELP: dict[ErrorCode, str] = {
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "The Content-Type is not an accepted audio type; send WAV, FLAC, OGG, "
    "audio/basic (G.711 μ-law), audio/x-alaw-basic or audio/L16.",
    ErrorCode.UNSUPPORTED_AUDIO: "The bytes could not be decoded as the declared type (or the format is unsupported).",
    ErrorCode.EMPTY_AUDIO: "The body holds no audio samples.",
    ErrorCode.AUDIO_TOO_LONG: "The audio is longer than VOICEID_MAX_AUDIO_S; send a shorter clip.",
    ErrorCode.PAYLOAD_TOO_LARGE: "The body is larger than VOICEID_MAX_UPLOAD_BYTES.",
    ErrorCode.NO_SPEECH: "The voice activity detector found no speech; check the audio and its content type.",
    ErrorCode.AUDIO_TOO_SHORT: "Less speech than VOICEID_MIN_NET_SPEECH_S (1 s) was found: nothing was scored. "
    "Above it a call is scored, and the calibration weighs how little speech there was (a short call usually "
    "answers INCONCLUSIVE). A refused attempt still counts toward lockout (half weight).",
    ErrorCode.MODEL_FILE_MISSING: "A model file is missing: run `voiceid models fetch`. Retry later.",
    ErrorCode.MODEL_FILE_CORRUPT: "A model file fails its hash check: run `voiceid models fetch` again.",
    ErrorCode.MODEL_VERSION_MISMATCH: "The voiceprint was made by another model version; re-enrol the speaker.",
    ErrorCode.CONSENT_REQUIRED: "No recorded consent (or it was withdrawn): PUT the speaker with consent.granted true.",
    ErrorCode.SPEAKER_NOT_FOUND: "No speaker with this id: PUT /v1/speakers/{id} first.",
    ErrorCode.SPEAKER_OPTED_OUT: "The speaker opted out; record a new consent before enrolling again.",
    ErrorCode.INVALID_SPEAKER_ID: "The speaker id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
    ErrorCode.INVALID_REQUEST: "A parameter or the JSON body is malformed; the message names the field.",
    ErrorCode.NOT_FOUND: "No such route or resource (watchlist entry, review item).",
    ErrorCode.UNAUTHENTICATED: "No API key or an unknown one: send `Authorization: Bearer <key>`.",
    ErrorCode.FORBIDDEN: "The key's role may not do this (e.g. an ivr key on the fraud endpoints).",
    ErrorCode.OVERLOADED: "The inference pool, the stream slots, the connections waiting to authenticate or the "
    "buffered upload bytes are at their limit; retry after the Retry-After header's seconds.",
    ErrorCode.CONFLICT: "The resource's state does not allow this (e.g. a review item already resolved).",
    ErrorCode.ENROLMENT_REFUSED: "The enrolment audio matches the watchlist or another enrolled identity "
    "(with the refuse settings); an analyst reviews it.",
    ErrorCode.CONFIGURATION_ERROR: "The server's settings are inconsistent; the operator must fix them.",
    ErrorCode.VERIFICATION_NOT_FOUND: "No verification with this id in the score log.",
    ErrorCode.CALL_NOT_FOUND: "No call with this id.",
    ErrorCode.INVALID_MESSAGE: "A stream message is malformed or out of order.",
    ErrorCode.EMBEDDING_NOT_AVAILABLE: "The attempt's embedding is not kept (not scored, past retention, or the "
    "speaker was erased), so it cannot be flagged or linked.",
    ErrorCode.METHOD_NOT_ALLOWED: "The route exists but not with this HTTP method.",
    ErrorCode.INTERNAL_ERROR: "An unexpected fault; nothing was changed. Report it with the time of the request.",
    ErrorCode.RATE_LIMITED: "More than VOICEID_ATTEMPT_RATE_LIMIT verification attempts for this speaker within "
    "VOICEID_ATTEMPT_RATE_WINDOW_S; retry after the Retry-After header's seconds.",
    ErrorCode.RETRY_NOT_ALLOWED: "`retry_of` names a verification that cannot be retried: not INCONCLUSIVE for lack "
    "of evidence alone (a flag, a challenge or a REJECT is never retried with more speech), older than "
    "VOICEID_RETRY_WINDOW_S, already retried, or itself a retry. Nothing was scored or counted; use another factor.",
    ErrorCode.AUTH_THROTTLED: "Too many failed authentications from this address; retry after Retry-After.",
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: "The declared or stored sample rate is outside VOICEID_MIN_SAMPLE_RATE .. "
    "VOICEID_MAX_SAMPLE_RATE (4-192 kHz by default).",
    ErrorCode.TOO_MANY_CHANNELS: "More audio channels than VOICEID_MAX_CHANNELS (2); send mono or stereo.",
    ErrorCode.DECODED_AUDIO_TOO_LARGE: "Rate x channels x duration exceeds VOICEID_MAX_DECODED_SAMPLES; "
    "nothing was decoded.",
    ErrorCode.CONTENT_TYPE_MISMATCH: "The bytes are a known container (WAV, FLAC, Ogg, .snd) or PCM of the other "
    "byte order, but were labelled otherwise; the message names both. Fix the Content-Type.",
    ErrorCode.REQUEST_TIMEOUT: "The request body did not arrive within VOICEID_BODY_TIMEOUT_S (audio) or "
    "VOICEID_JSON_BODY_TIMEOUT_S (JSON, forms).",
    ErrorCode.WEBHOOK_NOT_ALLOWED: "The webhook URL's host is not in VOICEID_WEBHOOK_ALLOWED_HOSTS, or it resolves "
    "to a loopback, private or link-local address; nothing was stored.",
    ErrorCode.ENROLMENT_SPOOF_SUSPECTED: "This enrolment audio replays a recording already heard for this speaker; "
    "nothing was stored. Enrol with live speech. (The synthetic-speech countermeasure alone never refuses "
    "enrolment audio: see `countermeasure` and `next_step` in the enrolment answer.)",
    ErrorCode.DATABASE_UNAVAILABLE: "The database cannot be reached; nothing was changed. Retry after Retry-After.",
    ErrorCode.HEADERS_TOO_LARGE: "The request line and headers exceed VOICEID_MAX_HEADER_BYTES (16 KiB); nothing "
    "was read further and the connection closes. Send fewer or shorter headers (cookies, long query strings).",
}


def error_table() -> str:
    """The Markdown table of every error code, its HTTP status and meaning, in ErrorCode order."""
    lines = ["| HTTP | code | meaning / what to do |", "|---:|---|---|"]
    for code in ErrorCode:
        lines.append(f"| {status_for(code)} | `{code.value}` | {ERROR_HELP[code]} |")
    return "\n".join(lines)
