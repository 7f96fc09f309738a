"""Asterisk AudioSocket over real TCP on loopback, call bindings over real HTTP, real model."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from voiceid.storage.models import EnrolmentEmbedding, Verification
from voiceid.telephony_adapter.audiosocket import AudioSocketServer
from voiceid.telephony_adapter.frames import Frame, Kind, encode_frame, parse_frames
from voiceid.telephony_adapter.simulator import simulate_audiosocket

pytestmark = [pytest.mark.model, pytest.mark.devdata]
SPEED = 8.0


@pytest.fixture
async def audiosocket(start_server) -> AsyncIterator:
    """(live HTTP server, AudioSocket port, start) where start(**settings) starts both on one service."""
    servers: list[AudioSocketServer] = []

    async def start(**overrides):
        live = start_server(**overrides)
        server = AudioSocketServer(live.service)
        servers.append(server)
        return live, await server.start("127.0.0.1", 0)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A tiny HTTP receiver on 127.0.0.1 that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    httpd.shutdown()


async def _sim(live, port, speaker, mode, audio, role="ivr", **kw):
    return await simulate_audiosocket(
        live.http_url, "127.0.0.1", port, speaker, mode, audio, live.keys[role], speed=SPEED, **kw
    )


async def _until(predicate, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_streamed_score_equals_http_mulaw_score_and_webhook(audiosocket, line, two_speakers, webhook):
    live, port = await audiosocket(accept_threshold=100.0, reject_threshold=-100.0)
    hook_url, received = webhook
    a, _ = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    probe = line(a, 2, 4.0)
    result = await _sim(live, port, a, "verify", probe, webhook_url=hook_url)
    assert result.outcome is not None and result.outcome["event"] == "decision", result.events
    assert result.outcome["early"] is False
    assert result.events[-1]["status"] == "COMPLETED"
    http = live.verify_http(a, probe)
    assert set(result.decision) == set(http)
    assert result.decision["score"] == pytest.approx(http["score"], abs=1e-3)
    assert result.decision["net_speech_s"] == pytest.approx(http["net_speech_s"], abs=1e-3)
    await _until(lambda: len(received) == 1)
    assert received[0]["status"] == "COMPLETED" and received[0]["outcome"] == result.outcome


async def test_early_decision_hangs_up_before_the_caller_does(audiosocket, line, two_speakers):
    live, port = await audiosocket()
    a, b = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    for speaker, index, expected in ((a, 6, "ACCEPT"), (b, 2, "REJECT")):
        probe = line(speaker, index, 8.0)
        # Silence holds the line after the file, so the server's decision (and hang-up) must come
        # before the simulated caller hangs up, however fast this machine scores.
        result = await _sim(live, port, a, "verify", probe, hold_s=40.0)
        assert result.decision is not None and result.decision["decision"] == expected, result.events
        assert result.outcome["early"] is True and result.outcome_before_end is True
        assert {"event": "frame", "kind": "hangup"} in result.events  # the server hung up on a decision
    assert live.count(Verification) == 2


async def test_enrolment_commits_on_hang_up_frame_only(audiosocket, line, two_speakers, webhook):
    live, port = await audiosocket()
    hook_url, received = webhook
    a, _ = two_speakers
    live.enrol(a, b"")
    audio = line(a, 0, 6.0)
    dropped = await _sim(live, port, a, "enrol", audio, role="enrolment", cut_after_s=4.0, webhook_url=hook_url)
    assert dropped.outcome is None and dropped.events[-1]["status"] == "ABANDONED"
    assert live.count(EnrolmentEmbedding) == 0
    await _until(lambda: len(received) == 1)
    assert received[0]["status"] == "ABANDONED" and received[0]["outcome"] is None
    result = await _sim(live, port, a, "enrol", audio, role="enrolment")
    assert result.outcome is not None and result.outcome["event"] == "enrolment", result.events
    assert result.outcome["enrolment"]["status"] == "ENROLLED"
    assert live.count(EnrolmentEmbedding) == 1


async def _raw_call(port: int, data: bytes) -> list[Frame]:
    """Send raw bytes; read frames until the server's hang-up, then close, as Asterisk does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    frames: list[Frame] = []
    buffer = b""
    while not frames or frames[-1].kind is not Kind.HANGUP:
        chunk = await asyncio.wait_for(reader.read(4096), 30)
        assert chunk, f"the server closed without a hang-up frame after {frames}"
        got, buffer = parse_frames(buffer + chunk)
        frames += got
    writer.close()
    assert buffer == b""
    return frames


def _error(code: str) -> list[Frame]:
    return [Frame(Kind.ERROR, code.encode()), Frame(Kind.HANGUP)]


async def test_bad_frames_and_bindings(audiosocket, line, two_speakers):
    live, port = await audiosocket()
    a, _ = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    unknown = uuid.uuid4()
    assert await _raw_call(port, encode_frame(Kind.UUID, unknown.bytes)) == _error("CALL_NOT_FOUND")
    assert await _raw_call(port, encode_frame(Kind.AUDIO, b"\0\0" * 160)) == _error("INVALID_MESSAGE")
    assert await _raw_call(port, b"\x01\x00\x03abc") == _error("INVALID_MESSAGE")  # UUID of 3 bytes
    # A bound call whose stream turns into garbage: error frame, the call is FAILED, nothing logged.
    with live.http("ivr") as http:
        bound = uuid.uuid4()
        assert http.put(f"/v1/calls/{bound}", json={"speaker_id": a}).status_code == 201
        frames = await _raw_call(
            port, encode_frame(Kind.UUID, bound.bytes) + encode_frame(Kind.AUDIO, b"\0\0" * 160) + b"\x42\x00\x00"
        )
        assert frames == _error("INVALID_MESSAGE")
        call = http.get(f"/v1/calls/{bound}").json()
        assert call["status"] == "FAILED" and call["outcome"]["code"] == "INVALID_MESSAGE"
        # A UUID serves one call: it can be neither re-bound nor reconnected.
        assert http.put(f"/v1/calls/{bound}", json={"speaker_id": a}).json()["code"] == "CONFLICT"
        assert await _raw_call(port, encode_frame(Kind.UUID, bound.bytes)) == _error("CONFLICT")
        # Binding rules.
        assert http.get(f"/v1/calls/{unknown}").json()["code"] == "CALL_NOT_FOUND"
        assert http.put(f"/v1/calls/{unknown}", json={"speaker_id": "nobody"}).status_code == 404
        assert http.put(f"/v1/calls/{unknown}", json={"speaker_id": a, "mode": "enrol"}).status_code == 403
        assert http.put("/v1/calls/not-a-uuid", json={"speaker_id": a}).status_code == 422
        assert http.put(f"/v1/calls/{unknown}", json={"speaker_id": a, "webhook_url": "ftp://x"}).status_code == 422
    with live.http("analyst") as http:
        assert http.put(f"/v1/calls/{unknown}", json={"speaker_id": a}).status_code == 403
    assert live.count(Verification) == 0
    # The server still serves proper calls.
    ok = await _sim(live, port, a, "verify", line(a, 6, 8.0))
    assert ok.decision is not None and ok.decision["decision"] == "ACCEPT"


async def test_webhook_receiver_down_does_not_fail_the_call(audiosocket, line, two_speakers):
    live, port = await audiosocket()
    a, _ = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    result = await _sim(live, port, a, "verify", line(a, 6, 8.0), webhook_url="http://127.0.0.1:9/nothing-listens")
    assert result.decision is not None and result.events[-1]["status"] == "COMPLETED"


async def test_ten_concurrent_calls(audiosocket, line, two_speakers):
    # The same recording sent five times is a replay attack by design (REPLAY_SUSPECTED); this test is
    # about concurrency, so replay detection is off here (tests/api/test_antispoof_service.py covers it),
    # and so is the lockout: five impostor REJECTs may land before the genuine calls, in any order.
    live, port = await audiosocket(replay_enabled=False, lockout_rejects=100)
    a, b = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    probes = [(line(a, 6, 6.0), "ACCEPT") if i % 2 == 0 else (line(b, 2, 6.0), "REJECT") for i in range(10)]
    results = await asyncio.gather(*(_sim(live, port, a, "verify", probe) for probe, _ in probes))
    for result, (_, expected) in zip(results, probes, strict=True):
        assert result.decision is not None and result.decision["decision"] == expected, result.events
    assert live.count(Verification) == 10
