"""Asterisk AudioSocket server: `voiceid telephony audiosocket --port P`.

Asterisk's dialplan (`AudioSocket(${UUID},host:port)`) opens one TCP connection per call and sends
the call UUID, then the caller's audio as 16-bit PCM frames (8 kHz: Asterisk has already decoded
the G.711 leg). The UUID must have been bound to a speaker with `PUT /v1/calls/{uuid}`; an unknown
or reused UUID gets an error frame (payload: the stable error code, ASCII) and a hang-up.

A verification hangs up as soon as it is decided, so `AudioSocket()` returns and the dialplan goes
on (reading the outcome with GET /v1/calls/{uuid}, or being told by the webhook). An enrolment
listens until the caller's hang-up frame and commits only then; a connection that just closes
commits nothing.

A connection holds no stream slot until its UUID frame has named a bound call (limits.py): until
then it counts as waiting to authenticate, capped per address and in all. A UUID that names no
bound call counts as a failed authentication toward the address's throttle (guessing UUIDs is
guessing credentials), and a throttled address is refused before its UUID is looked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle, check_throttle
from voiceid.services.root import VoiceIdService
from voiceid.statuses import CallMode
from voiceid.telephony_adapter.call_registry import CallRegistry, CallView
from voiceid.telephony_adapter.call_session import PCM16LE_8K, CallSession, Event, error_event
from voiceid.telephony_adapter.frames import HEADER, Frame, FrameError, Kind, check_frame, encode_frame
from voiceid.telephony_adapter.limits import PreAuthGate, StreamSlots, StreamTimeouts

log = logging.getLogger(__name__)

# After hanging up on a decision, how long to wait for the peer to close. Closing at once while
# audio is still in flight makes the kernel answer with a reset, which can destroy the hang-up
# frame before the peer has read it.
LINGER_S = 5.0


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame; None when the peer closed the connection (cleanly between frames or not)."""
    try:
        header = await reader.readexactly(HEADER.size)
        kind, length = HEADER.unpack(header)
        payload = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return check_frame(kind, payload)


class AudioSocketServer:
    def __init__(self, service: VoiceIdService) -> None:
        self.service = service
        self.registry = CallRegistry(service.ctx, service.speakers)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        settings = service.settings
        self.slots = StreamSlots(settings.max_streams)
        self.gate = PreAuthGate.from_settings(settings)
        self.throttle = FailureThrottle(
            settings.auth_fail_limit, settings.auth_fail_window_s, settings.auth_throttle_clients
        )
        self.timeouts = StreamTimeouts.from_settings(service.settings)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._connection, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("start() first")
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        try:
            check_throttle(self.throttle, host)
            self.gate.enter(host)
        except VoiceIdError as exc:
            await self._refuse(writer, exc)
            writer.close()
            if task is not None:
                self._connections.discard(task)
            return
        held = _Held(self, host)
        try:
            await self._call(reader, writer, held)
        except Exception:
            # One broken call must not take the server down.
            log.exception("audiosocket connection failed")
            await self._refuse(writer, VoiceIdError(ErrorCode.INTERNAL_ERROR, "internal error"))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)
            held.release()

    async def _send(self, writer: asyncio.StreamWriter, *frames: bytes) -> None:
        if writer.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            writer.write(b"".join(frames))
            await writer.drain()

    async def _refuse(self, writer: asyncio.StreamWriter, exc: VoiceIdError) -> None:
        await self._send(writer, encode_frame(Kind.ERROR, exc.code.value.encode("ascii")), encode_frame(Kind.HANGUP))

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        async def until_closed() -> None:
            while (frame := await read_frame(reader)) is not None and frame.kind is not Kind.HANGUP:
                pass

        with contextlib.suppress(TimeoutError, FrameError):
            await asyncio.wait_for(until_closed(), LINGER_S)

    async def _call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: _Held) -> None:
        try:
            # Asterisk sends the UUID frame straight after connecting; a silent connection is not a call.
            first = await asyncio.wait_for(read_frame(reader), self.timeouts.start_s)
        except TimeoutError:
            await self._refuse(
                writer, VoiceIdError(ErrorCode.REQUEST_TIMEOUT, f"no UUID frame within {self.timeouts.start_s:g} s")
            )
            return
        except FrameError as exc:
            await self._refuse(writer, VoiceIdError(ErrorCode.INVALID_MESSAGE, f"expected a UUID frame: {exc}"))
            return
        if first is None:
            return
        if first.kind is not Kind.UUID:
            await self._refuse(writer, VoiceIdError(ErrorCode.INVALID_MESSAGE, "the first frame must be the call UUID"))
            return
        call_id = uuid.UUID(bytes=first.payload)
        try:
            # Looked up before a slot is taken; claimed (BOUND -> IN_PROGRESS) only with one.
            await asyncio.to_thread(self.registry.check_claimable, call_id)
        except VoiceIdError as exc:
            log.info("audiosocket call %s refused: %s", call_id, exc.code)
            if exc.code is ErrorCode.CALL_NOT_FOUND:
                self.throttle.failed(held.host)
            await self._refuse(writer, exc)
            await self._linger(reader)
            return
        held.authenticated()
        try:
            self.slots.acquire()
        except VoiceIdError as exc:
            await self._refuse(writer, exc)  # the call stays BOUND: Asterisk may retry it
            return
        held.holds_slot = True
        try:
            call = await asyncio.to_thread(self.registry.claim, call_id)
        except VoiceIdError as exc:
            log.info("audiosocket call %s refused: %s", call_id, exc.code)
            await self._refuse(writer, exc)
            await self._linger(reader)
            return
        await self._stream(call_id, call, reader, writer)

    async def _stream(
        self, call_id: uuid.UUID, call: CallView, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def emit(event: Event) -> None:
            if event["event"] not in {"decision", "enrolment", "error"}:
                return  # AudioSocket has no channel for interim events
            # Stored before the hang-up, so a dialplan that reads the outcome right after
            # AudioSocket() returns always finds it.
            await asyncio.to_thread(self.registry.finish, call_id, event)  # also enqueues the webhook
            if event["event"] == "error":
                await self._refuse(writer, VoiceIdError(ErrorCode(event["code"]), event["message"]))
            elif event["event"] == "decision":
                await self._send(writer, encode_frame(Kind.HANGUP))

        session = CallSession(
            self.service, call.speaker_id, call.mode, PCM16LE_8K, emit, call.api_key_id, challenge_id=call.challenge_id
        )
        clean = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.wall_s
        try:
            await session.open()
            while not session.finished:
                try:
                    wait = max(0.0, min(self.timeouts.idle_s, deadline - loop.time()))
                    frame = await asyncio.wait_for(read_frame(reader), wait)
                except TimeoutError:
                    # The line went quiet (or the call outlived VOICEID_STREAM_MAX_WALL_S): a
                    # verification is decided on the audio it has, an enrolment is abandoned.
                    log.info("call %s: no frame within %.1f s", call_id, wait)
                    clean = session.mode is CallMode.VERIFY
                    if not clean:
                        await session.end(clean=False)
                        await emit(error_event(VoiceIdError(ErrorCode.REQUEST_TIMEOUT, "the call went silent")))
                        return
                    break
                if frame is None:
                    break  # dropped without a hang-up frame
                if frame.kind is Kind.AUDIO:
                    await session.feed(frame.payload)
                elif frame.kind is Kind.HANGUP:
                    clean = True
                    break
                elif frame.kind is Kind.ERROR:
                    log.info("call %s: Asterisk reported error %r", call_id, frame.payload)
                    break
                elif frame.kind is Kind.UUID:
                    raise FrameError("a second UUID frame on one call")
        except FrameError as exc:
            await session.end(clean=False)
            await emit(error_event(VoiceIdError(ErrorCode.INVALID_MESSAGE, str(exc))))
            return
        except VoiceIdError as exc:  # from open(): speaker gone, consent withdrawn
            await emit(error_event(exc))
            return
        await session.end(clean=clean)
        if session.decided and not clean:
            await self._linger(reader)
        if session.outcome is None:
            await asyncio.to_thread(self.registry.finish, call_id, None)


class _Held:
    """What one connection holds: a place in the pre-auth gate until its call is found, then a
    stream slot."""

    def __init__(self, server: AudioSocketServer, host: str | None) -> None:
        self.server = server
        self.host = host
        self.waiting = True
        self.holds_slot = False

    def authenticated(self) -> None:
        if self.waiting:
            self.waiting = False
            self.server.gate.leave(self.host)

    def release(self) -> None:
        self.authenticated()
        if self.holds_slot:
            self.holds_slot = False
            self.server.slots.release()


async def serve(service: VoiceIdService, host: str, port: int) -> None:
    server = AudioSocketServer(service)
    bound = await server.start(host, port)
    log.warning("AudioSocket server listening on %s:%d", host, bound)
    try:
        await server.serve_forever()
    finally:
        await server.close()
