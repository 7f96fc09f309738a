"""Issue 20 as the attack, on loopback against `voiceid serve`'s own configuration: idle
pre-authentication sockets do not hold stream slots, key guessing over streams is throttled,
bodies are authenticated and bounded before they are read, and /readyz says when it is saturated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import Callable

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.telephony_adapter.conftest import Live
from tests.telephony_adapter.test_hostile_connections import _closed_by_server, _port, _read_frames
from voiceid.telephony_adapter.audiosocket import AudioSocketServer
from voiceid.telephony_adapter.frames import Kind, encode_frame


def _start(speaker: str, mode: str, key: str) -> str:
    params = {"speaker_id": speaker, "mode": mode, "api_key": key}
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "customParameters": params}})


async def _stream(url: str, first: str | None) -> tuple[list[dict], int | None]:
    """Open a stream, send `first` (if any), and read every event until the server closes."""
    events: list[dict] = []
    async with connect(url) as ws:
        if first is not None:
            await ws.send(first)
        try:
            async for message in ws:
                events.append(json.loads(message))
        except ConnectionClosed:
            pass
        return events, ws.close_code


def _consented(live: Live, speaker: str) -> None:
    """A consented speaker who is not enrolled: a verify stream for them is decided (and logged)
    as soon as its key is checked, without any audio or model."""
    live.enrol(speaker, b"")


def test_66_idle_preauth_websockets_do_not_stop_a_real_stream(serve: Callable[..., Live]) -> None:
    live = serve(max_streams=4, stream_start_timeout_s=4.0, preauth_per_address=100, max_preauth_connections=100)
    _consented(live, "caller")

    async def scenario() -> tuple[list[tuple[list[dict], int | None]], list[int]]:
        idle = [await connect(live.ws_url) for _ in range(66)]  # never send `start`
        await asyncio.sleep(0.3)
        assert httpx.get(live.http_url + "/readyz", timeout=10).status_code == 200  # no slot is taken
        real = [
            await asyncio.wait_for(_stream(live.ws_url, _start("caller", "verify", live.keys["ivr"])), 15)
            for _ in range(5)
        ]
        codes = []
        for ws in idle:
            await ws.close()
            codes.append(ws.close_code or 0)
        return real, codes

    real, _ = asyncio.run(scenario())
    for events, close_code in real:
        # More real calls than VOICEID_MAX_STREAMS, one after another, none refused OVERLOADED.
        assert [e["event"] for e in events] == ["decision"], events
        assert close_code == 1000
        assert events[0]["verification"]["decision"] == "NOT_ENROLLED"


def test_preauth_connections_are_capped_per_address_and_in_all(serve: Callable[..., Live]) -> None:
    live = serve(stream_start_timeout_s=4.0, preauth_per_address=3, max_preauth_connections=5)

    def ready() -> httpx.Response:
        return httpx.get(live.http_url + "/readyz", timeout=10)

    async def scenario() -> None:
        held = [await connect(live.ws_url) for _ in range(3)]
        await asyncio.sleep(0.2)
        events, code = await asyncio.wait_for(_stream(live.ws_url, None), 10)
        assert code == 1013 and events[-1]["code"] == "OVERLOADED", events
        assert "VOICEID_PREAUTH_PER_ADDRESS" in events[-1]["message"]
        assert ready().json()["saturated"] == []  # 3 of 5 in all
        # Other addresses (loopback has a /8) fill the total cap: a botnet is not stopped by the
        # per-address cap alone, the total is what keeps connections for everyone else.
        held += [await connect(live.ws_url, local_addr=("127.0.0.2", 0)) for _ in range(2)]
        await asyncio.sleep(0.2)
        status = ready()
        assert status.status_code == 503 and status.json()["status"] == "saturated"
        assert status.json()["saturated"] == ["preauth_connections"]
        events = []
        async with connect(live.ws_url, local_addr=("127.0.0.3", 0)) as ws:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    events.append(json.loads(message))
        assert events[-1]["code"] == "OVERLOADED" and "VOICEID_MAX_PREAUTH_CONNECTIONS" in events[-1]["message"]
        for ws in held:
            await ws.close()
        await asyncio.sleep(0.3)
        assert ready().status_code == 200

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_wrong_stream_keys_are_throttled_per_address(serve: Callable[..., Live]) -> None:
    live = serve(auth_fail_limit=3, auth_fail_window_s=600)
    _consented(live, "caller")

    async def scenario() -> list[tuple[list[dict], int | None]]:
        results = []
        for key in ["vid_guess1", "vid_guess2", "vid_guess3", "vid_guess4", live.keys["ivr"]]:
            results.append(await asyncio.wait_for(_stream(live.ws_url, _start("caller", "verify", key)), 10))
        return results

    results = asyncio.run(scenario())
    codes = [events[-1].get("code") for events, _ in results]
    assert codes == ["UNAUTHENTICATED"] * 3 + ["AUTH_THROTTLED"] * 2  # the right key too, once throttled
    assert all(code == 1008 for _, code in results)
    # The HTTP API shares the throttle: the same address is refused there as well.
    r = httpx.get(live.http_url + "/v1/api-keys", headers={"Authorization": f"Bearer {live.keys['admin']}"})
    assert r.status_code == 429


def test_rotating_x_forwarded_for_does_not_reset_the_throttle(serve: Callable[..., Live]) -> None:
    live = serve(auth_fail_limit=3, auth_fail_window_s=600)
    codes = [
        httpx.get(
            live.http_url + "/v1/api-keys",
            headers={"Authorization": f"Bearer vid_wrong{i}", "X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(6)
    ]
    assert codes == [401] * 3 + [429] * 3


def test_x_forwarded_for_is_believed_from_a_configured_proxy(serve: Callable[..., Live]) -> None:
    live = serve(auth_fail_limit=3, auth_fail_window_s=600, trusted_proxies="127.0.0.1")
    codes = [
        httpx.get(
            live.http_url + "/v1/api-keys",
            headers={"Authorization": f"Bearer vid_wrong{i}", "X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(6)
    ]
    assert codes == [401] * 6  # six clients behind the proxy, one failure each


def _raw(live: Live, head: bytes, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(live)))
    sock.sendall(head + body)
    return sock


def _answer(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    answer = b""
    try:
        while not answer.endswith(b"}") and (chunk := sock.recv(4096)):
            answer += chunk
    except TimeoutError:
        pass
    return answer


def test_huge_unauthenticated_json_is_refused_before_it_is_read(serve: Callable[..., Live]) -> None:
    live = serve(http_header_timeout_s=30.0)
    # 100 MB declared, 64 KiB sent: the 401 comes back anyway (nothing waited for the body), and
    # the connection is closed rather than kept to drain the rest.
    sock = _raw(
        live,
        b"PUT /v1/speakers/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n",
        b'{"consent": "' + b"a" * 65536,
    )
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"UNAUTHENTICATED" in answer and b"connection: close" in answer.lower()
    assert _closed_by_server(sock, 5.0)
    sock.close()
    # A chunked body (no length declared) is refused the same way.
    sock = _raw(
        live,
        b"PUT /v1/speakers/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + b"a" * 0x10000 + b"\r\n",
    )
    assert _answer(sock).startswith(b"HTTP/1.1 401")
    sock.close()


def test_authenticated_json_is_bounded_in_size_and_time(serve: Callable[..., Live]) -> None:
    live = serve(http_header_timeout_s=30.0, json_max_bytes=4096, json_body_timeout_s=1.0)
    auth = b"Authorization: Bearer " + live.keys["enrolment"].encode() + b"\r\n"
    sock = _raw(
        live,
        b"PUT /v1/speakers/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Content-Length: 100000000\r\n\r\n",
    )
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"PAYLOAD_TOO_LARGE" in answer, answer[:200]
    sock.close()
    # Chunked and over the limit: 413 once the limit is passed.
    sock = _raw(
        live,
        b"PUT /v1/speakers/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Transfer-Encoding: chunked\r\n\r\n",
        b"2000\r\n" + b"a" * 0x2000 + b"\r\n",
    )
    assert _answer(sock).startswith(b"HTTP/1.1 413")
    sock.close()
    # Trickled: 408 at the body deadline, however slowly the bytes keep coming.
    sock = _raw(
        live,
        b"PUT /v1/speakers/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Content-Length: 200\r\n\r\n",
        b"{",
    )
    started = time.monotonic()
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer, answer[:200]
    assert time.monotonic() - started < 8.0
    sock.close()
    # And a well-formed body within the bounds still works.
    with live.http("enrolment") as http:
        r = http.put("/v1/speakers/fine", json={"consent": {"granted": True, "text_version": "v1"}})
        assert r.status_code == 201, r.text


def _upload(live: Live, length: int, sent: int) -> socket.socket:
    """An authenticated audio upload declaring `length` bytes that sends `sent` of them, then holds."""
    auth = b"Authorization: Bearer " + live.keys["ivr"].encode() + b"\r\n"
    return _raw(
        live,
        b"POST /v1/speakers/x/verifications HTTP/1.1\r\nHost: x\r\nContent-Type: audio/basic\r\n"
        + auth
        + f"Content-Length: {length}\r\n\r\n".encode(),
        b"\xff" * sent,
    )


def test_aggregate_upload_bytes_are_bounded(serve: Callable[..., Live]) -> None:
    live = serve(http_header_timeout_s=30.0, body_timeout_s=20.0, max_buffered_upload_bytes=150_000)
    first = _upload(live, 120_000, 100_000)  # held: 100 000 bytes buffered
    time.sleep(0.5)
    second = _upload(live, 120_000, 60_000)  # would pass 150 000: refused at the chunk that crosses
    answer = _answer(second)
    assert answer.startswith(b"HTTP/1.1 503") and b"OVERLOADED" in answer, answer[:300]
    assert b"retry-after: 1" in answer.lower()
    second.close()
    small = _upload(live, 1_000, 1_000)  # under the bound: still served while the first is held
    assert not _answer(small, 30).startswith(b"HTTP/1.1 503")
    small.close()
    first.close()
    time.sleep(0.5)
    # The first upload's bytes are released when its request ends: the budget is whole again.
    third = _upload(live, 120_000, 120_000)
    answer = _answer(third, 30)
    assert answer.startswith(b"HTTP/1.1") and not answer.startswith(b"HTTP/1.1 503"), answer[:300]
    third.close()


def test_readyz_says_saturated_when_the_upload_budget_is_spent(serve: Callable[..., Live]) -> None:
    live = serve(http_header_timeout_s=30.0, body_timeout_s=20.0, max_buffered_upload_bytes=100_000)
    held = _upload(live, 120_000, 100_000)
    time.sleep(0.5)
    ready = httpx.get(live.http_url + "/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["saturated"] == ["upload_bytes"], ready.text
    refused = _upload(live, 1_000, 1_000)  # a new upload is refused before it is read
    assert _answer(refused).startswith(b"HTTP/1.1 503")
    refused.close()
    held.close()
    time.sleep(0.5)
    assert httpx.get(live.http_url + "/readyz", timeout=10).status_code == 200


async def test_audiosocket_idle_connections_hold_no_slot_and_uuid_guesses_are_throttled(serve) -> None:  # type: ignore[no-untyped-def]
    live = serve(max_streams=1, stream_start_timeout_s=3.0, preauth_per_address=20, auth_fail_limit=3)
    _consented(live, "caller")
    server = AudioSocketServer(live.service)
    port = await server.start("127.0.0.1", 0)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]  # no UUID frame
        await asyncio.sleep(0.2)
        assert server.slots.active == 0 and server.gate.active == 10
        call_id = uuid.uuid4()
        with live.http("ivr") as http:
            assert http.put(f"/v1/calls/{call_id}", json={"speaker_id": "caller"}).status_code == 201
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(Kind.UUID, call_id.bytes))
        await writer.drain()
        frames = await _read_frames(reader, 10)
        assert frames[-1].kind is Kind.HANGUP and all(f.kind is not Kind.ERROR for f in frames), frames
        writer.close()
        with live.http("ivr") as http:
            assert http.get(f"/v1/calls/{call_id}").json()["outcome"]["event"] == "decision"
        for _, w in idle:
            w.close()
        # Guessed UUIDs: three unknown ones, then even a bound one is refused from this address.
        payloads = []
        bound = uuid.uuid4()
        with live.http("ivr") as http:
            assert http.put(f"/v1/calls/{bound}", json={"speaker_id": "caller"}).status_code == 201
        for guess in [uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), bound]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(encode_frame(Kind.UUID, guess.bytes))
            await writer.drain()
            frames = await _read_frames(reader, 10)
            payloads.append(frames[0].payload)
            writer.close()
        assert payloads == [b"CALL_NOT_FOUND"] * 3 + [b"AUTH_THROTTLED"]
    finally:
        await server.close()
