"""Twilio Media Streams over WebSocket at /v1/streams/twilio.

Twilio sends JSON text messages: `connected`, `start` (stream metadata, the media format and the
`customParameters` set in TwiML: `speaker_id`, `mode` and `api_key`), `media` (base64 μ-law, 8 kHz,
20 ms a message), `mark`, `dtmf` and `stop`. The server answers with JSON events: `interim`,
then one `decision` (verify) or `enrolment` (enrol), or an `error` with a stable code followed by a
close: 1008 when the key or the request is refused (or `start` did not come within
VOICEID_STREAM_START_TIMEOUT_S), 1007 for a malformed message, 1003 for a binary frame, 1011 when
the service itself failed, 1013 when VOICEID_MAX_STREAMS calls are already in progress (or too many
connections are waiting to authenticate). A connection holds no stream slot until its `start` has
arrived and its key has been checked (limits.py); wrong keys count toward the per-address auth
throttle, as on HTTP. A stream
that goes quiet for VOICEID_STREAM_IDLE_TIMEOUT_S (or outlives VOICEID_STREAM_MAX_WALL_S) is
decided on its audio so far (verify) or abandoned (enrol).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import MutableMapping
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect

from voiceid.challenge.policy import CHALLENGE_ID
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle
from voiceid.services.api_keys import authenticate_throttled, permitted
from voiceid.services.root import VoiceIdService
from voiceid.statuses import CallMode
from voiceid.telephony_adapter.call_session import ROLE_FOR_MODE, ULAW_8K, CallSession, Event, error_event
from voiceid.telephony_adapter.limits import PreAuthGate, StreamSlots, StreamTimeouts

log = logging.getLogger(__name__)

router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class _Message(BaseModel):
    # Twilio adds fields over time; unknown ones are ignored rather than refused.
    model_config = ConfigDict(extra="ignore")
    sequenceNumber: str | None = None
    streamSid: str | None = None


class MediaFormat(BaseModel):
    encoding: str
    sampleRate: int
    channels: int = 1


class StartBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    streamSid: str | None = None
    callSid: str | None = None
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    customParameters: dict[str, str] = Field(default_factory=dict)
    mediaFormat: MediaFormat | None = None


class MediaBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    track: str = "inbound"
    payload: str


class MarkBody(BaseModel):
    name: str


class Connected(_Message):
    event: Literal["connected"]


class Start(_Message):
    event: Literal["start"]
    start: StartBody


class Media(_Message):
    event: Literal["media"]
    media: MediaBody


class Mark(_Message):
    event: Literal["mark"]
    mark: MarkBody


class Dtmf(_Message):
    event: Literal["dtmf"]


class Stop(_Message):
    event: Literal["stop"]


TwilioMessage = Annotated[Connected | Start | Media | Mark | Dtmf | Stop, Field(discriminator="event")]
_messages: TypeAdapter[Connected | Start | Media | Mark | Dtmf | Stop] = TypeAdapter(TwilioMessage)


class StreamParameters(BaseModel):
    """The TwiML <Parameter>s this service needs on a stream."""

    speaker_id: str = Field(min_length=1, max_length=128)
    mode: CallMode = CallMode.VERIFY
    api_key: str = Field(min_length=1)
    # A spoken challenge issued for this speaker (POST /v1/speakers/{id}/challenges): the caller's
    # audio must say its prompt. A malformed id closes the stream as an invalid message.
    challenge_id: str | None = Field(None, pattern=CHALLENGE_ID.pattern)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'message'}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )


class StreamClosed(Exception):
    """The connection is over: the stream ended, failed, or the client went away."""


class TwilioStream:
    def __init__(
        self,
        ws: WebSocket,
        service: VoiceIdService,
        slots: StreamSlots,
        gate: PreAuthGate,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self.ws = ws
        self.service = service
        self.slots = slots
        self.gate = gate
        self.throttle = throttle
        self.host = ws.client.host if ws.client else None
        self.stream_sid: str | None = None
        self.session: CallSession | None = None
        self._send_lock = asyncio.Lock()
        self._waiting = False  # counted in the pre-auth gate
        self._holds_slot = False

    def admit(self) -> None:
        """Count this connection as waiting to authenticate (OVERLOADED when too many are)."""
        self.gate.enter(self.host)
        self._waiting = True

    def _authenticated(self) -> None:
        if self._waiting:
            self._waiting = False
            self.gate.leave(self.host)

    def release(self) -> None:
        self._authenticated()
        if self._holds_slot:
            self._holds_slot = False
            self.slots.release()

    async def _authenticate(self, secret: str, mode: CallMode) -> str:
        """The key id of `secret` for a call in `mode`; a wrong key counts toward this address's
        auth throttle, a throttled address is refused before its key is looked at."""
        found = await authenticate_throttled(self.service.keys, self.throttle, self.host, secret)
        return permitted(found, (ROLE_FOR_MODE[mode],)).key_id

    async def emit(self, event: Event) -> None:
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps({**event, "streamSid": self.stream_sid}))
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The client hung up; the outcome is still in the score log.
                log.debug("stream %s: client gone before an event could be sent", self.stream_sid)

    async def fail(self, exc: VoiceIdError, close_code: int) -> NoReturn:
        if self.session is not None:
            await self.session.end(clean=False)
        await self.emit(error_event(exc))
        async with self._send_lock:
            with contextlib.suppress(RuntimeError, OSError):  # already closed by the client
                await self.ws.close(close_code, exc.code.value)
        raise StreamClosed

    async def run(self) -> None:
        timeouts = StreamTimeouts.from_settings(self.service.settings)
        loop = asyncio.get_running_loop()
        opened = loop.time()
        deadline = opened + timeouts.wall_s
        try:
            while True:
                # Before `start` the deadline is absolute (a client repeating `connected` or `mark`
                # does not extend it); after it, each message must follow the last within idle_s.
                now = loop.time()
                limit = opened + timeouts.start_s if self.session is None else now + timeouts.idle_s
                try:
                    raw = await asyncio.wait_for(self.ws.receive(), max(0.0, min(limit, deadline) - now))
                except TimeoutError:
                    waited = timeouts.wall_s if loop.time() >= deadline else limit - now
                    await self.timed_out(timeouts.start_s if self.session is None else waited)
                await self.handle(raw)
        except StreamClosed:
            return

    async def timed_out(self, waited_s: float) -> NoReturn:
        """Nothing came in time. A verification is decided on the audio it has (the IVR is waiting
        for an answer); a stream that never started, or an enrolment, is abandoned."""
        session = self.session
        if session is not None and session.mode is CallMode.VERIFY:
            await session.end(clean=True)
            async with self._send_lock:
                with contextlib.suppress(RuntimeError, OSError):
                    await self.ws.close(CLOSE_NORMAL)
            raise StreamClosed
        what = "'start'" if session is None else "the next message"
        await self.fail(
            VoiceIdError(ErrorCode.REQUEST_TIMEOUT, f"no {what} within {waited_s:g} s; the stream is closed"),
            CLOSE_POLICY_VIOLATION,
        )

    async def handle(self, raw: MutableMapping[str, Any]) -> None:
        if raw["type"] == "websocket.disconnect":
            # Dropped without `stop`: whatever was not decided yet is discarded.
            if self.session is not None:
                await self.session.end(clean=False)
            raise StreamClosed
        text = raw.get("text")
        if text is None:
            await self.fail(
                VoiceIdError(ErrorCode.INVALID_MESSAGE, "binary frames are not part of the protocol; send JSON text"),
                CLOSE_UNSUPPORTED_DATA,
            )
        try:
            message = _messages.validate_json(text)
        except ValidationError as exc:
            await self.fail(VoiceIdError(ErrorCode.INVALID_MESSAGE, _problems(exc)), CLOSE_INVALID_PAYLOAD)
            return
        if isinstance(message, Start):
            await self.start(message)
        elif isinstance(message, Media):
            await self.media(message)
        elif isinstance(message, Stop):
            if self.session is not None:
                await self.session.end(clean=True)
            async with self._send_lock:
                await self.ws.close(CLOSE_NORMAL)
            raise StreamClosed
        # connected, mark and dtmf carry nothing this service acts on.

    async def start(self, message: Start) -> None:
        if self.session is not None:
            await self.fail(
                VoiceIdError(ErrorCode.INVALID_MESSAGE, "a second 'start' on one stream"), CLOSE_INVALID_PAYLOAD
            )
        self.stream_sid = message.start.streamSid or message.streamSid
        media_format = message.start.mediaFormat
        if media_format is not None and (
            media_format.encoding.lower() != "audio/x-mulaw"
            or media_format.sampleRate != 8000
            or media_format.channels != 1
        ):
            await self.fail(
                VoiceIdError(
                    ErrorCode.UNSUPPORTED_AUDIO,
                    f"media format {media_format.encoding} {media_format.sampleRate} Hz x{media_format.channels} "
                    "is not supported; Twilio streams are audio/x-mulaw, 8000 Hz, mono",
                ),
                CLOSE_INVALID_PAYLOAD,
            )
        try:
            params = StreamParameters.model_validate(message.start.customParameters)
        except ValidationError as exc:
            await self.fail(
                VoiceIdError(ErrorCode.INVALID_MESSAGE, f"customParameters: {_problems(exc)}"), CLOSE_POLICY_VIOLATION
            )
            return
        try:
            key_id = await self._authenticate(params.api_key, params.mode)
        except VoiceIdError as exc:
            await self.fail(exc, CLOSE_POLICY_VIOLATION)
        self._authenticated()
        try:
            self.slots.acquire()  # only now: an unauthenticated connection never holds a slot
        except VoiceIdError as exc:
            await self.fail(exc, CLOSE_TRY_AGAIN_LATER)
        self._holds_slot = True
        try:
            session = CallSession(
                self.service,
                params.speaker_id,
                params.mode,
                ULAW_8K,
                self.emit,
                key_id,
                challenge_id=params.challenge_id,
            )
            self.session = session
            await session.open()
        except VoiceIdError as exc:
            self.session = None
            await self.fail(exc, CLOSE_POLICY_VIOLATION)

    async def media(self, message: Media) -> None:
        if self.session is None:
            await self.fail(VoiceIdError(ErrorCode.INVALID_MESSAGE, "'media' before 'start'"), CLOSE_INVALID_PAYLOAD)
            return
        if message.media.track != "inbound":
            return  # with both_tracks, the outbound leg is the IVR's own prompts, not the caller
        try:
            chunk = base64.b64decode(message.media.payload, validate=True)
        except (binascii.Error, ValueError):
            await self.fail(
                VoiceIdError(ErrorCode.INVALID_MESSAGE, "media.payload is not valid base64"), CLOSE_INVALID_PAYLOAD
            )
            return
        await self.session.feed(chunk)


@router.websocket("/v1/streams/twilio")
async def twilio_stream(ws: WebSocket) -> None:
    await ws.accept()
    state = ws.app.state
    stream = TwilioStream(ws, state.service, state.stream_slots, state.preauth_gate, state.auth_throttle)
    try:
        stream.admit()
    except VoiceIdError as exc:
        with contextlib.suppress(StreamClosed, RuntimeError, OSError):
            await stream.fail(exc, CLOSE_TRY_AGAIN_LATER)
        return
    try:
        await stream.run()
    except Exception:
        # One broken call must not take the others down; it ends with a generic error.
        log.exception("stream %s failed", stream.stream_sid)
        with contextlib.suppress(StreamClosed, RuntimeError, OSError):
            await stream.fail(VoiceIdError(ErrorCode.INTERNAL_ERROR, "internal error"), CLOSE_INTERNAL_ERROR)
    finally:
        stream.release()
