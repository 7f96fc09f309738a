"""Issue 20's attacks against a running `voiceid serve`, on loopback: huge and trickled JSON bodies,
held audio uploads, and WebSockets that never authenticate; prints, for each, the answers, the
server's peak memory growth, /readyz, and whether real calls (a consent PUT, an HTTP verification,
a Twilio stream) still succeed meanwhile.

    PYTHONPATH=. .venv/bin/python bench/security_round2.py              # starts `voiceid serve` itself

The attackers come from many loopback addresses (127.0.1.1 ... 127.0.1.N: loopback is a /8), as a
botnet would, so no per-address cap can be what stops them. Memory is the server process's own
(VmHWM, reset before each attack). Bounded: every connection has a deadline, every attack a
duration. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.security_bombs import reset_peak, start_server, status_mb

MB = 1024 * 1024


def source(i: int, addresses: int) -> str:
    return f"127.0.1.{1 + i % addresses}"


async def _answer(reader: asyncio.StreamReader, timeout_s: float) -> str:
    """The status line and error code of the response, or why there is none."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return "no answer"
    status = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ", 2)[1]
    try:
        body = await asyncio.wait_for(reader.read(4096), 2)
        code = json.loads(body).get("code", "")
    except (TimeoutError, ValueError, ConnectionError):
        code = ""
    return f"{status} {code}".strip()


def _request(method: str, path: str, content_type: str, length: int | None, key: str | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- real traffic, measured while each attack runs ------------------------------------------


@dataclass
class Real:
    results: Counter[str] = field(default_factory=Counter)
    ready: Counter[int] = field(default_factory=Counter)
    rounds: int = 0

    def line(self) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.results.items()))
        ready = ", ".join(f"{v} x {k}" for k, v in sorted(self.ready.items()))
        return f"real calls meanwhile: {parts}; /readyz: {ready}"


async def real_traffic(url: str, keys: dict[str, str], done: asyncio.Event, real: Real) -> None:
    """A consent PUT, an HTTP verification and a Twilio verify stream, one after another, and a
    /readyz probe, until `done`. Each round uses a speaker of its own, so the per-speaker attempt
    rate limit (10 an hour) is not what answers; the speakers are consented, not enrolled, so a
    verification is decided (NOT_ENROLLED) without the model and the figures are about admission."""
    ws_url = url.replace("http://", "ws://") + "/v1/streams/twilio"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not done.is_set():
            real.rounds += 1
            speaker = f"real-{real.rounds}-{time.monotonic_ns()}"
            try:
                r = await http.put(
                    f"/v1/speakers/{speaker}",
                    json={"consent": {"granted": True, "text_version": "v1"}},
                    headers={"Authorization": f"Bearer {keys['enrolment']}"},
                )
                real.results[f"consent PUT {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                real.results[f"consent PUT {type(exc).__name__}"] += 1
            try:
                r = await http.post(
                    f"/v1/speakers/{speaker}/verifications",
                    content=b"\xff" * 16000,
                    headers={"Authorization": f"Bearer {keys['ivr']}", "Content-Type": "audio/basic"},
                )
                real.results[f"HTTP verification {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                real.results[f"HTTP verification {type(exc).__name__}"] += 1
            start = json.dumps(
                {
                    "event": "start",
                    "start": {"customParameters": {"speaker_id": speaker, "mode": "verify", "api_key": keys["ivr"]}},
                }
            )
            try:
                async with connect(ws_url, open_timeout=10) as ws:
                    await ws.send(start)
                    event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    real.results[f"stream {event['event']} {event.get('code', '')}".strip()] += 1
            except Exception as exc:
                real.results[f"stream {type(exc).__name__}"] += 1
            try:
                real.ready[(await http.get("/readyz")).status_code] += 1
            except httpx.HTTPError:
                real.ready[0] += 1
            await asyncio.sleep(0.2)


async def _with_real(url: str, keys: dict[str, str], attack: Coroutine[Any, Any, list[str]]) -> tuple[list[str], Real]:
    real = Real()
    done = asyncio.Event()
    task = asyncio.create_task(real_traffic(url, keys, done, real))
    rows = await attack
    done.set()
    await task
    return rows, real


# --- the attacks ----------------------------------------------------------------------------


async def huge_json(url: str, n: int, size: int, key: str | None, addresses: int) -> list[str]:
    """`n` parallel PUTs of a `size`-byte JSON body, sent as fast as the server takes it."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b'{"consent": {"text_version": "' + b"a" * (64 * 1024 - 31)

    async def one(i: int) -> tuple[str, int]:
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source(i, addresses), 0))
        writer.write(_request("PUT", "/v1/speakers/huge-json", "application/json", size, key))
        sent = 0
        answer = asyncio.create_task(_answer(reader, 120))
        try:
            while sent < size and not answer.done():
                writer.write(chunk[: size - sent])
                await writer.drain()
                sent += len(chunk[: size - sent])
        except ConnectionError:
            pass
        got = await answer
        writer.close()
        return got, sent

    results = await asyncio.gather(*(one(i) for i in range(n)))
    answers = Counter(a for a, _ in results)
    sent = max(s for _, s in results)
    return [f"answers {dict(answers)}; most bytes the server let a client send: {sent / MB:.1f} MB"]


async def slow_json(url: str, n: int, hold_s: float, key: str | None, addresses: int) -> list[str]:
    """`n` connections trickling a PUT body at one byte every 2 s (as the probe did), each reopened
    as soon as the server ends it, for `hold_s`."""
    host, port = url.removeprefix("http://").split(":")
    ended = time.monotonic() + hold_s
    answers: Counter[str] = Counter()
    longest = 0.0

    async def attempt(i: int) -> None:
        nonlocal longest
        try:
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source(i, addresses), 0))
        except OSError as exc:
            answers[f"connect {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            return
        opened = time.monotonic()
        writer.write(_request("PUT", f"/v1/speakers/slow-{i}", "application/json", 10_000, key))
        answer = asyncio.create_task(_answer(reader, max(0.1, ended - opened)))
        try:
            while not answer.done() and time.monotonic() < ended:
                writer.write(b" ")
                await writer.drain()
                await asyncio.wait([answer], timeout=2.0)
        except ConnectionError:
            pass
        answers[await answer] += 1
        longest = max(longest, time.monotonic() - opened)
        writer.close()

    async def one(i: int) -> None:
        while time.monotonic() < ended:
            await attempt(i)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return [f"answers {dict(answers)}; longest a trickled body was held: {longest:.1f} s"]


async def held_uploads(
    url: str, n: int, declared: int, sent: int, hold_s: float, key: str, addresses: int
) -> list[str]:
    """`n` authenticated audio uploads declaring `declared` bytes, sending `sent`, then holding."""
    host, port = url.removeprefix("http://").split(":")

    async def one(i: int) -> str:
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source(i, addresses), 0))
        writer.write(_request("POST", "/v1/speakers/real-caller/verifications", "audio/basic", declared, key))
        answer = asyncio.create_task(_answer(reader, hold_s))
        try:
            for offset in range(0, sent, 64 * 1024):
                if answer.done():
                    break
                writer.write(b"\xff" * min(64 * 1024, sent - offset))
                await writer.drain()
        except ConnectionError:
            pass
        got = await answer
        writer.close()
        return got

    results = await asyncio.gather(*(one(i) for i in range(n)))
    return [f"answers {dict(Counter(results))}"]


async def idle_websockets(url: str, n: int, duration_s: float, addresses: int) -> list[str]:
    """`n` WebSockets that never send `start`, reopened as the server closes them, for `duration_s`."""
    ws_url = url.replace("http://", "ws://") + "/v1/streams/twilio"
    ended = time.monotonic() + duration_s
    closes: Counter[str] = Counter()

    async def holder(i: int) -> None:
        while time.monotonic() < ended:
            try:
                async with connect(ws_url, open_timeout=10, local_addr=(source(i, addresses), 0)) as ws:
                    try:
                        event = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, ended - time.monotonic())))
                        closes[event.get("code", event["event"])] += 1
                    except TimeoutError:
                        return
            except Exception as exc:
                closes[type(exc).__name__] += 1
                await asyncio.sleep(0.1)

    await asyncio.gather(*(holder(i) for i in range(n)))
    return [f"attacker sockets closed by the server with: {dict(closes)}"]


async def _both(*attacks: Coroutine[Any, Any, list[str]]) -> list[str]:
    return [row for rows in await asyncio.gather(*attacks) for row in rows]


async def run_all(url: str, keys: dict[str, str], pid: int | None, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        r = await http.put(
            "/v1/speakers/real-caller",
            json={"consent": {"granted": True, "text_version": "v1"}},
            headers={"Authorization": f"Bearer {keys['enrolment']}"},
        )
        assert r.status_code in (200, 201), r.text
    n_addr = args.addresses
    attacks = [
        (
            f"huge JSON: {args.huge_n} x {args.huge_mb} MB PUT /v1/speakers/x, no key",
            lambda: huge_json(url, args.huge_n, args.huge_mb * MB, None, n_addr),
        ),
        (
            f"huge JSON: 1 x {args.huge_mb} MB PUT /v1/speakers/x, a valid key",
            lambda: huge_json(url, 1, args.huge_mb * MB, keys["enrolment"], n_addr),
        ),
        (
            f"slow JSON: {args.slow_n} bodies trickled at 1 byte / 2 s from {n_addr} addresses, no key",
            lambda: slow_json(url, args.slow_n, args.hold_s, None, n_addr),
        ),
        (
            "slow JSON: 50 bodies trickled at 1 byte / 2 s, a valid key",
            lambda: slow_json(url, 50, args.hold_s, keys["enrolment"], n_addr),
        ),
        (
            f"held uploads: {args.uploads} x 16 MiB declared, all but 1 KiB sent, then held, a valid key",
            lambda: held_uploads(url, args.uploads, 16 * MB, 16 * MB - 1024, args.hold_s, keys["ivr"], n_addr),
        ),
        (
            f"slot holding: {args.ws} WebSockets that never send start, reopened for {args.hold_s:.0f} s",
            lambda: idle_websockets(url, args.ws, args.hold_s, n_addr),
        ),
        (
            f"combined: {args.ws} idle WebSockets and {args.slow_n} trickled bodies (no key) at once, for "
            f"{args.hold_s:.0f} s",
            lambda: _both(
                idle_websockets(url, args.ws, args.hold_s, n_addr),
                slow_json(url, args.slow_n, args.hold_s, None, n_addr),
            ),
        ),
    ]
    for name, attack in attacks:
        if pid is not None:
            reset_peak(pid)
            base = status_mb(pid, "VmRSS")
        started = time.monotonic()
        rows, real = await _with_real(url, keys, attack())
        growth = f"{status_mb(pid, 'VmHWM') - base:.0f} MB" if pid is not None else "n/a"
        print(f"\n### {name}\n- {'; '.join(rows)}\n- {real.line()}")
        print(f"- took {time.monotonic() - started:.1f} s; server peak RSS growth {growth}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nofile", type=int, default=4096, help="soft file limit the started server gets")
    parser.add_argument("--addresses", type=int, default=64, help="loopback source addresses the attackers use")
    parser.add_argument("--huge-n", type=int, default=6)
    parser.add_argument("--huge-mb", type=int, default=100)
    parser.add_argument("--slow-n", type=int, default=505)
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--ws", type=int, default=66)
    parser.add_argument("--hold-s", type=float, default=20.0, help="how long each held attack lasts")
    args = parser.parse_args()
    proc, url, admin, data = start_server(args.nofile)
    pid = proc.pid
    print(f"server pid {pid} at {url}, data in {data}")
    try:
        keys = {}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
            for role in ("ivr", "enrolment"):
                keys[role] = http.post("/v1/api-keys", json={"role": role}).json()["key"]
        print(f"server RSS before: {status_mb(pid, 'VmRSS'):.0f} MB")
        asyncio.run(run_all(url, keys, pid, args))
        print(f"\nserver RSS after: {status_mb(pid, 'VmRSS'):.0f} MB")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
