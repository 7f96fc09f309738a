"""One call's audio, whatever the transport: accumulate 8 kHz telephone audio, score it while the
caller talks, decide early when the score is clear, and commit enrolment only on a clean end.

The transports (Twilio Media Streams, Asterisk AudioSocket) only parse their wire format and hand
audio chunks to a `CallSession`; every score and decision comes from `VoiceIdService`, on the same
decode -> resample -> VAD -> embed path as an HTTP upload of the same bytes. The session keeps the
bytes exactly as they arrived (μ-law, or 16-bit PCM) and gives the service those bytes with the
matching content type, so a streamed call and an HTTP upload of the same audio score identically.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role, VerificationView
from voiceid.statuses import CallMode
from voiceid.verify.decision import Decision
from voiceid.wire import EnrolmentOut, VerificationOut

log = logging.getLogger(__name__)

T = TypeVar("T")
Event = dict[str, Any]
Emit = Callable[[Event], Awaitable[None]]

# How long a final decision or enrolment waits for room in a saturated inference pool before
# giving up with OVERLOADED: interims are skipped when the pool is full, the final result is not.
FINAL_RETRY_S = 10.0
FINAL_RETRY_STEP_S = 0.1


# The API-key role a call's mode needs, on every transport (HTTP binding, Twilio, AudioSocket).
ROLE_FOR_MODE = {CallMode.VERIFY: Role.IVR, CallMode.ENROL: Role.ENROLMENT}


@dataclass(frozen=True)
class StreamFormat:
    """How a transport's audio bytes are to be read: the content type the decoders know, and the
    byte rate (8 kHz mono), which turns byte counts into seconds."""

    content_type: str
    bytes_per_second: int
    bytes_per_sample: int


ULAW_8K = StreamFormat("audio/basic;rate=8000", 8000, 1)
PCM16LE_8K = StreamFormat("audio/L16;rate=8000;endian=little", 16000, 2)


def decision_event(view: VerificationView, audio_s: float, early: bool) -> Event:
    """The `decision` event; `verification` is exactly the body of the HTTP verification response."""
    body = VerificationOut.model_validate(view).model_dump(mode="json")
    return {"event": "decision", "early": early, "audio_s": round(audio_s, 3), "verification": body}


def error_event(exc: VoiceIdError) -> Event:
    return {"event": "error", **exc.to_dict()}


class CallSession:
    """The audio of one call and what has been decided about it.

    `feed` is called with each chunk as it arrives and never waits for inference: an interim score
    runs as a background task on the service's inference pool, at most one at a time per call
    (a chunk that arrives while one runs just waits for the next one), every `stream_interim_s` of
    new audio once there is `min_net_speech_s` of audio. In verify mode, an interim whose outcome
    is ACCEPT or REJECT (enough net speech, score outside the INCONCLUSIVE band) becomes the
    decision at once. Otherwise `end(clean=True)` decides on all the audio (stop / caller hang-up),
    as does reaching `stream_max_s`. Enrolment commits only in `end(clean=True)`: a call that drops
    leaves the speaker exactly as it was.
    """

    def __init__(
        self,
        service: VoiceIdService,
        speaker_id: str,
        mode: CallMode,
        fmt: StreamFormat,
        emit: Emit,
        api_key_id: str | None = None,
        challenge_id: str | None = None,
    ) -> None:
        self.service = service
        self.speaker_id = speaker_id
        self.mode = mode
        # A call answering a spoken challenge is decided on all its audio (the whole prompt must
        # be heard), never early on an interim.
        self.challenge_id = challenge_id
        self.fmt = fmt
        self.api_key_id = api_key_id
        self._emit = emit
        settings = service.settings
        max_s = min(settings.stream_max_s, settings.max_audio_s)
        self._max_bytes = self._whole_samples(max_s * fmt.bytes_per_second)
        self._interim_bytes = max(
            fmt.bytes_per_sample, self._whole_samples(settings.stream_interim_s * fmt.bytes_per_second)
        )
        self._next_interim_at = max(
            self._interim_bytes, self._whole_samples(settings.min_net_speech_s * fmt.bytes_per_second)
        )
        self._audio = bytearray()
        self._interim: asyncio.Task[None] | None = None
        self._latest: tuple[int, EmbeddedUtterance] | None = None  # embedding of the first n bytes
        self._lock = asyncio.Lock()
        self.outcome: Event | None = None  # the decision / enrolment / error event, once there is one
        self.finished = False  # no more audio is used: decided, ended, or dropped
        self.abandoned: VerificationView | None = None  # the attempt logged when a scored stream dropped

    def _whole_samples(self, n_bytes: float) -> int:
        return int(n_bytes) // self.fmt.bytes_per_sample * self.fmt.bytes_per_sample

    @property
    def audio_s(self) -> float:
        return len(self._audio) / self.fmt.bytes_per_second

    @property
    def decided(self) -> bool:
        return self.outcome is not None and self.outcome["event"] in {"decision", "enrolment"}

    async def open(self) -> None:
        """Checks that need no audio, before the caller's voice is processed at all: the speaker
        must exist; a verification of a speaker who is opted out, locked or not enrolled is decided
        (and logged) right here; an enrolment needs consent. Raises VoiceIdError otherwise."""
        if self.mode is CallMode.VERIFY:
            view = await asyncio.to_thread(self.service.verifications.precheck, self.speaker_id, self.api_key_id)
            if view is not None:
                await self._conclude(decision_event(view, 0.0, early=True))
        else:
            await asyncio.to_thread(self.service.enrolment.check_can_enrol, self.speaker_id)

    async def feed(self, chunk: bytes) -> None:
        if self.finished:
            return
        self._audio += chunk[: max(0, self._max_bytes - len(self._audio))]
        if len(self._audio) >= self._max_bytes:
            if self.mode is CallMode.VERIFY:
                await self.end(clean=True)
            # An enrolment stream at its limit waits for its clean end; later audio is ignored.
            return
        if len(self._audio) >= self._next_interim_at and (self._interim is None or self._interim.done()):
            self._next_interim_at = len(self._audio) + self._interim_bytes
            self._interim = asyncio.create_task(self._run_interim(bytes(self._audio)))

    async def end(self, clean: bool) -> None:
        """The stream is over. Clean (stop message, caller hang-up frame, time limit): decide on all
        the audio, or commit the enrolment. Not clean (the connection dropped): an enrolment drops
        everything; a verification that has scored audio and has no outcome yet is logged and
        counted as an abandoned attempt (`verify.decision.abandon`), nothing is sent."""
        if not clean:
            self.finished = True
            if self.mode is CallMode.VERIFY:
                await self._count_abandoned()
            return
        if self._interim is not None and not self._interim.done():
            # Its result may be the decision already (or the embedding of exactly this audio).
            await asyncio.shield(self._interim)
        async with self._lock:
            if self.finished:
                return
            self.finished = True
            data = bytes(self._audio)
            try:
                if self.mode is CallMode.VERIFY:
                    utterance = self._latest[1] if self._latest and self._latest[0] == len(data) else None
                    if utterance is None:
                        utterance = await self._final(self.service.analyse, data, self.fmt.content_type)
                    heard = await self._final(
                        self.service.verifications.hear, self.speaker_id, self.challenge_id, data, self.fmt.content_type
                    )
                    view = await self._final(
                        self.service.verifications.decide,
                        self.speaker_id,
                        utterance,
                        self.api_key_id,
                        self.challenge_id,
                        heard,
                    )
                    event = decision_event(view, len(data) / self.fmt.bytes_per_second, early=False)
                else:
                    step = await self._final(
                        self.service.enrolment.add_audio, self.speaker_id, data, self.fmt.content_type
                    )
                    event = {
                        "event": "enrolment",
                        "audio_s": round(self.audio_s, 3),
                        "enrolment": EnrolmentOut.model_validate(step).model_dump(mode="json"),
                    }
            except VoiceIdError as exc:
                event = error_event(exc)
            await self._conclude(event)

    async def _count_abandoned(self) -> None:
        if self._interim is not None and not self._interim.done():
            # An interim in flight may be the first scored audio: let it finish (it sends nothing now).
            await asyncio.shield(self._interim)
        async with self._lock:
            if self.outcome is not None or self._latest is None or self.abandoned is not None:
                return
            utterance = self._latest[1]
            try:
                # A challenge it was answering is spent unheard: a dropped call is no free retry.
                self.abandoned = await self._final(
                    self.service.verifications.decide,
                    self.speaker_id,
                    utterance,
                    self.api_key_id,
                    self.challenge_id,
                    None,
                    True,
                )
            except VoiceIdError as exc:
                log.warning("abandoned stream for %s could not be logged: %s", self.speaker_id, exc.code)

    async def _final(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking service call off the event loop; wait out a full inference pool."""
        waited = 0.0
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except VoiceIdError as exc:
                if exc.code is not ErrorCode.OVERLOADED or waited >= FINAL_RETRY_S:
                    raise
            await asyncio.sleep(FINAL_RETRY_STEP_S)
            waited += FINAL_RETRY_STEP_S

    async def _conclude(self, event: Event) -> None:
        self.finished = True
        self.outcome = event
        await self._emit(event)

    async def _run_interim(self, data: bytes) -> None:
        audio_s = len(data) / self.fmt.bytes_per_second
        try:
            if self.mode is CallMode.ENROL:
                quality = await asyncio.to_thread(self.service.enrolment.measure_speech, data, self.fmt.content_type)
                if not self.finished:
                    await self._emit(
                        {
                            "event": "interim",
                            "audio_s": round(audio_s, 3),
                            "net_speech_s": round(quality.net_speech_s, 3),
                        }
                    )
                return
            utterance = await asyncio.to_thread(self.service.analyse, data, self.fmt.content_type)
            preview = await asyncio.to_thread(self.service.verifications.preview, self.speaker_id, utterance)
        except VoiceIdError as exc:
            await self._interim_failed(exc, audio_s)
            return
        self._latest = (len(data), utterance)
        if self.finished:
            return
        await self._emit(
            {
                "event": "interim",
                "audio_s": round(audio_s, 3),
                "net_speech_s": round(utterance.quality.net_speech_s, 3),
                # Progress and a coarse state only: an exact interim score would let an attacker
                # hill-climb a synthetic voice toward acceptance within one call.
                "progress": round(min(1.0, audio_s / self.service.settings.stream_max_s), 2),
                "state": preview.leaning.value,
            }
        )
        if preview.outcome.decision is not Decision.INCONCLUSIVE and self.challenge_id is None:
            async with self._lock:
                if self.finished:
                    return
                try:
                    view = await self._final(
                        self.service.verifications.decide, self.speaker_id, utterance, self.api_key_id
                    )
                except VoiceIdError as exc:
                    await self._conclude(error_event(exc))
                    return
                await self._conclude(decision_event(view, audio_s, early=True))

    async def _interim_failed(self, exc: VoiceIdError, audio_s: float) -> None:
        if exc.code is ErrorCode.OVERLOADED or self.finished:
            return  # an interim is a courtesy; the next one (or the final decision) will come
        if exc.code in {ErrorCode.NO_SPEECH, ErrorCode.AUDIO_TOO_SHORT}:
            # Not enough speech yet to score: report progress, keep listening.
            net = float(exc.details.get("net_speech_s", 0.0))
            event: Event = {"event": "interim", "audio_s": round(audio_s, 3), "net_speech_s": round(net, 3)}
            if self.mode is CallMode.VERIFY:
                event["state"] = "UNDECIDED"
            await self._emit(event)
            return
        # The speaker was deleted or opted out mid-call, or the audio itself is unusable: the
        # call cannot come to a decision, so it ends with the error.
        async with self._lock:
            if not self.finished:
                await self._conclude(error_event(exc))
