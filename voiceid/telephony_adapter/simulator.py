"""The IVR simulator: plays audio files into the service the way a telephone platform would.

The audio is turned into a phone line first (8 kHz, G.711 μ-law) and sent in 20 ms frames, in real
time or `speed` times faster: as Twilio `media` messages over WebSocket, as AudioSocket audio frames
(the μ-law decoded to 16-bit PCM, as Asterisk hands over a G.711 call), as a SIP call (INVITE over
UDP, then RTP packets of PCMU to the port voiceid answered, as an IVR bridging the caller), or, for
comparison, as one
HTTP upload once the caller has finished speaking. It records every event and the time from the
first frame to the decision.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from voiceid.audio import g711
from voiceid.audio.resample import resample
from voiceid.telephony_adapter.frames import Frame, FrameError, Kind, encode_frame, parse_frames
from voiceid.telephony_adapter.rtp import build_rtp
from voiceid.telephony_adapter.siprec import parse_sdp

RATE = 8000
FRAME_S = 0.02
FRAME_SAMPLES = int(RATE * FRAME_S)
PROTOCOLS = ("twilio", "audiosocket", "sip", "http")
FINAL_EVENTS = {"decision", "enrolment", "error"}


def phone_line(files: Sequence[Path]) -> bytes:
    """The files, one after another, as 8 kHz G.711 μ-law bytes."""
    parts = []
    for path in files:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        parts.append(resample(samples.mean(axis=1), int(rate), RATE))
    return g711.encode(np.concatenate(parts), "ulaw")


@dataclass
class SimulationResult:
    protocol: str
    events: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None  # the decision / enrolment / error event
    first_frame_to_outcome_s: float | None = None
    audio_sent_s: float = 0.0
    close_code: int | None = None  # Twilio: the server's WebSocket close code
    outcome_before_end: bool = False  # decided while the simulated caller was still on the line

    @property
    def decision(self) -> dict[str, Any] | None:
        if self.outcome is None or self.outcome.get("event") != "decision":
            return None
        verification: dict[str, Any] = self.outcome["verification"]
        return verification


class _Clock:
    """Paces frames at 20 ms / speed and times the outcome from the first frame."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.first: float | None = None

    async def wait_for_frame(self, index: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            return
        delay = self.first + index * FRAME_S / self.speed - now
        if delay > 0:
            await asyncio.sleep(delay)

    def since_first(self) -> float | None:
        return None if self.first is None else time.perf_counter() - self.first


ULAW_SILENCE = g711.encode(np.zeros(FRAME_SAMPLES, dtype=np.float32), "ulaw")


def _frames(ulaw: bytes, cut_after_s: float | None, hold_s: float = 0.0) -> list[bytes]:
    """20 ms frames of the audio, then `hold_s` of line silence: a phone line keeps carrying
    frames after the caller pauses, until the IVR ends the stream."""
    end = len(ulaw) if cut_after_s is None else min(len(ulaw), int(cut_after_s * RATE))
    frames = [ulaw[i : i + FRAME_SAMPLES] for i in range(0, end, FRAME_SAMPLES)]
    return frames + [ULAW_SILENCE] * int(hold_s / FRAME_S)


async def simulate_twilio(
    ws_url: str,
    speaker_id: str,
    mode: str,
    ulaw: bytes,
    api_key: str,
    speed: float = 1.0,
    cut_after_s: float | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    timeout_s: float = 60.0,
    hold_s: float = 0.0,
    challenge_id: str | None = None,
) -> SimulationResult:
    """One Twilio Media Stream. `cut_after_s` drops the connection (no `stop`) after that much audio;
    `hold_s` keeps the line open with silence after the audio, until an outcome arrives;
    `challenge_id` is sent as the stream's customParameters.challenge_id."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    result = SimulationResult("twilio")
    clock = _Clock(speed)
    sid = "MZ" + uuid.uuid4().hex
    done = asyncio.Event()
    ended = False  # the simulated caller has sent `stop` (or dropped)

    async with connect(ws_url, max_size=None, open_timeout=timeout_s) as ws:

        async def read() -> None:
            try:
                async for raw in ws:
                    event = json.loads(raw)
                    result.events.append(event)
                    if on_event is not None:
                        on_event(event)
                    if event.get("event") in FINAL_EVENTS and result.outcome is None:
                        result.outcome = event
                        result.first_frame_to_outcome_s = clock.since_first()
                        result.outcome_before_end = not ended
                        done.set()
            except ConnectionClosed:
                pass
            finally:
                result.close_code = ws.close_code
                done.set()

        reader = asyncio.create_task(read())
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "streamSid": sid,
            "callSid": "CA" + uuid.uuid4().hex,
            "tracks": ["inbound"],
            "customParameters": {
                "speaker_id": speaker_id,
                "mode": mode,
                "api_key": api_key,
                **({} if challenge_id is None else {"challenge_id": challenge_id}),
            },
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        }
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": start}))
        try:
            for index, chunk in enumerate(_frames(ulaw, cut_after_s, hold_s)):
                if done.is_set():
                    break  # decided (the IVR moves on), or the server closed the stream
                await clock.wait_for_frame(index)
                media = {"track": "inbound", "chunk": str(index + 1), "timestamp": str(index * 20)}
                media["payload"] = base64.b64encode(chunk).decode("ascii")
                await ws.send(
                    json.dumps({"event": "media", "sequenceNumber": str(index + 2), "streamSid": sid, "media": media})
                )
                result.audio_sent_s += len(chunk) / RATE
            ended = True
            if cut_after_s is not None:
                ws.transport.abort()  # the line drops: no `stop`, no closing handshake
            elif not done.is_set() or result.outcome is not None:
                await ws.send(json.dumps({"event": "stop", "streamSid": sid, "stop": {}}))
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(reader, timeout_s)
        except TimeoutError:
            reader.cancel()
    return result


async def bind_call(
    http: httpx.AsyncClient, call_id: uuid.UUID, speaker_id: str, mode: str, webhook_url: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"speaker_id": speaker_id, "mode": mode}
    if webhook_url:
        body["webhook_url"] = webhook_url
    response = await http.put(f"/v1/calls/{call_id}", json=body)
    response.raise_for_status()
    bound: dict[str, Any] = response.json()
    return bound


async def wait_for_call(http: httpx.AsyncClient, call_id: uuid.UUID, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.get(f"/v1/calls/{call_id}")
        response.raise_for_status()
        call: dict[str, Any] = response.json()
        if call["status"] not in {"BOUND", "IN_PROGRESS"} or time.monotonic() > deadline:
            return call
        await asyncio.sleep(0.05)


async def simulate_audiosocket(
    http_url: str,
    host: str,
    port: int,
    speaker_id: str,
    mode: str,
    ulaw: bytes,
    api_key: str,
    speed: float = 1.0,
    cut_after_s: float | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    webhook_url: str | None = None,
    call_id: uuid.UUID | None = None,
    bind: bool = True,
    timeout_s: float = 60.0,
    hold_s: float = 0.0,
) -> SimulationResult:
    """One Asterisk AudioSocket call: bind it over HTTP, stream it over TCP, read its outcome over
    HTTP. The server hangs up as soon as a verification is decided; that moment is the decision."""
    result = SimulationResult("audiosocket")
    clock = _Clock(speed)
    call_id = call_id or uuid.uuid4()
    server_hung_up = asyncio.Event()
    ended = False  # the simulated caller has hung up (or dropped)
    async with httpx.AsyncClient(
        base_url=http_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s
    ) as http:
        if bind:
            await bind_call(http, call_id, speaker_id, mode, webhook_url)
        reader, writer = await asyncio.open_connection(host, port)

        async def read() -> None:
            buffer = b""
            try:
                while data := await reader.read(4096):
                    frames: list[Frame]
                    frames, buffer = parse_frames(buffer + data)
                    for frame in frames:
                        event: dict[str, Any] = {"event": "frame", "kind": frame.kind.name.lower()}
                        if frame.kind is Kind.ERROR:
                            event["code"] = frame.payload.decode("ascii", "replace")
                        result.events.append(event)
                        if on_event is not None:
                            on_event(event)
                        if frame.kind in {Kind.HANGUP, Kind.ERROR} and not server_hung_up.is_set():
                            result.first_frame_to_outcome_s = clock.since_first()
                            result.outcome_before_end = not ended
                            server_hung_up.set()
            except (ConnectionError, FrameError):
                pass
            finally:
                server_hung_up.set()

        read_task = asyncio.create_task(read())
        try:
            writer.write(encode_frame(Kind.UUID, call_id.bytes))
            for index, chunk in enumerate(_frames(ulaw, cut_after_s, hold_s)):
                if server_hung_up.is_set():
                    break
                await clock.wait_for_frame(index)
                writer.write(encode_frame(Kind.AUDIO, g711.ulaw_to_pcm16(chunk).astype("<i2").tobytes()))
                await writer.drain()
                result.audio_sent_s += len(chunk) / RATE
            ended = True
            if cut_after_s is not None:
                writer.transport.abort()  # the line drops without a hang-up frame
            elif not server_hung_up.is_set():
                writer.write(encode_frame(Kind.HANGUP))
                await writer.drain()
            else:
                writer.close()  # the server hung up: close our side, as Asterisk does
        except ConnectionError:
            pass
        try:
            await asyncio.wait_for(read_task, timeout_s)
        except TimeoutError:
            read_task.cancel()
        writer.close()
        call = await wait_for_call(http, call_id, timeout_s)
        if result.first_frame_to_outcome_s is None or not server_hung_up.is_set():
            result.first_frame_to_outcome_s = clock.since_first()
        outcome = call.get("outcome")
        if outcome is not None:
            result.outcome = outcome
            result.events.append(outcome)
            if on_event is not None:
                on_event(outcome)
        result.events.append({"event": "call", "call_id": str(call_id), "status": call["status"]})
    return result


class _SipPeer(asyncio.DatagramProtocol):
    """The simulated IVR's SIP socket: queues what voiceid sends, answers its BYE with 200 OK."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.bye: str | None = None
        self.hung_up = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("latin-1")
        if text.startswith("BYE "):
            from sippy.SipRequest import SipRequest

            request = SipRequest(text)
            if self.transport is not None:
                self.transport.sendto(str(request.genResponse(200, "OK")).encode("latin-1"), addr)
            self.bye = text
            self.hung_up.set()
            return
        self.messages.put_nowait(text)


async def simulate_sip(
    http_url: str,
    host: str,
    port: int,
    speaker_id: str,
    mode: str,
    ulaw: bytes,
    api_key: str,
    speed: float = 1.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    webhook_url: str | None = None,
    timeout_s: float = 60.0,
    hold_s: float = 0.0,
) -> SimulationResult:
    """One plain SIP leg: bind the call over HTTP, INVITE voiceid with `X-Voiceid-Call` (UDP), send
    the audio as PCMU RTP, hang up at the end unless voiceid hangs up first (its BYE carries the
    decision), then read the outcome over HTTP."""
    from sippy.SipResponse import SipResponse

    result = SimulationResult("sip")
    clock = _Clock(speed)
    call_id = uuid.uuid4()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(
        base_url=http_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s
    ) as http:
        await bind_call(http, call_id, speaker_id, mode, webhook_url)
        sip_transport, peer = await loop.create_datagram_endpoint(_SipPeer, remote_addr=(host, port))
        rtp_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            local_ip, local_port = sip_transport.get_extra_info("sockname")[:2]
            rtp_port = rtp_transport.get_extra_info("sockname")[1]
            tag, sip_call_id = uuid.uuid4().hex[:10], f"{call_id}@{local_ip}"
            sdp = (
                f"v=0\r\no=ivr 1 1 IN IP4 {local_ip}\r\ns=-\r\nc=IN IP4 {local_ip}\r\nt=0 0\r\n"
                f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            )

            def message(method: str, cseq: int, to_tag: str = "", body: str = "") -> bytes:
                lines = [
                    f"{method} sip:voiceid@{host}:{port} SIP/2.0",
                    f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
                    f"From: <sip:ivr@{local_ip}:{local_port}>;tag={tag}",
                    f"To: <sip:voiceid@{host}:{port}>" + (f";tag={to_tag}" if to_tag else ""),
                    f"Call-ID: {sip_call_id}",
                    f"CSeq: {cseq} {method}",
                    f"Contact: <sip:ivr@{local_ip}:{local_port}>",
                    "Max-Forwards: 70",
                    f"X-Voiceid-Call: {call_id}",
                ]
                if body:
                    lines.append("Content-Type: application/sdp")
                return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode("latin-1")

            sip_transport.sendto(message("INVITE", 1, body=sdp))
            while True:
                response = SipResponse(await asyncio.wait_for(peer.messages.get(), timeout_s))
                if response.getSCode()[0] >= 200:
                    break
            code, reason = response.getSCode()[:2]
            to_tag = response.getHFBody("to").getTag() or ""
            sip_transport.sendto(message("ACK", 1, to_tag))
            if code != 200:
                event = {"event": "error", "code": f"SIP_{code}", "message": reason}
                result.outcome = event
                result.events.append(event)
                if on_event is not None:
                    on_event(event)
                return result
            streams, _ = parse_sdp(str(response.getBody().content), 4)
            target = (streams[0].address, streams[0].port)
            for index, chunk in enumerate(_frames(ulaw, None, hold_s)):
                if peer.hung_up.is_set():
                    break
                await clock.wait_for_frame(index)
                rtp_transport.sendto(build_rtp(0, index, index * FRAME_SAMPLES, 0x1D5EED, chunk), target)
                result.audio_sent_s += len(chunk) / RATE
            if peer.hung_up.is_set():
                result.first_frame_to_outcome_s = clock.since_first()
                result.outcome_before_end = True
            else:
                sip_transport.sendto(message("BYE", 2, to_tag))
            call = await wait_for_call(http, call_id, timeout_s)
        finally:
            sip_transport.close()
            rtp_transport.close()
        if result.first_frame_to_outcome_s is None:
            result.first_frame_to_outcome_s = clock.since_first()
        if peer.bye is not None:
            header = next((h for h in peer.bye.split("\r\n") if h.lower().startswith("x-voiceid-")), None)
            result.events.append({"event": "bye", "header": header})
            if on_event is not None:
                on_event(result.events[-1])
        outcome = call.get("outcome")
        if outcome is not None:
            result.outcome = outcome
            result.events.append(outcome)
            if on_event is not None:
                on_event(outcome)
        result.events.append({"event": "call", "call_id": str(call_id), "status": call["status"]})
    return result


async def simulate_http(
    http_url: str,
    speaker_id: str,
    mode: str,
    ulaw: bytes,
    api_key: str,
    speed: float = 1.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    timeout_s: float = 60.0,
) -> SimulationResult:
    """The upload baseline: the caller speaks the whole file, then it is sent as one audio/basic body."""
    result = SimulationResult("http")
    clock = _Clock(speed)
    await clock.wait_for_frame(0)
    await asyncio.sleep(len(ulaw) / RATE / speed)
    result.audio_sent_s = len(ulaw) / RATE
    path = "verifications" if mode == "verify" else "enrolment-audio"
    async with httpx.AsyncClient(base_url=http_url, timeout=timeout_s) as http:
        response = await http.post(
            f"/v1/speakers/{speaker_id}/{path}",
            content=ulaw,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "audio/basic"},
        )
    result.first_frame_to_outcome_s = clock.since_first()
    body = response.json()
    if response.status_code != 200:
        event = {"event": "error", **body}
    elif mode == "verify":
        event = {"event": "decision", "early": False, "audio_s": result.audio_sent_s, "verification": body}
    else:
        event = {"event": "enrolment", "audio_s": result.audio_sent_s, "enrolment": body}
    result.outcome = event
    result.events.append(event)
    if on_event is not None:
        on_event(event)
    return result
