"""Issue 10's attacks against a running server, on loopback: decoder bombs, then an idle-connection
flood; prints each answer, its time, the server's peak memory growth and whether /readyz stayed up.

    PYTHONPATH=. .venv/bin/python bench/security_bombs.py            # starts `voiceid serve` itself
    PYTHONPATH=. .venv/bin/python bench/security_bombs.py --url http://127.0.0.1:8000 --pid 1234 --key ADMIN

By default the server is started with a soft file limit of 1 024 (as on the attacked host) and a
fresh data directory; memory is read from /proc/<pid>/status (VmHWM, reset through clear_refs
before each bomb), so the figures are the server process's own, not this client's. Bounded: each
request has a timeout, the flood lasts --flood-s seconds. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from voiceid.testkit.bombs import flac_bomb, l16_odd_rate, mulaw_odd_rate, real_flac_bomb

FLAC_CACHE = Path(tempfile.gettempdir()) / "voiceid-bench-flac-bomb-179s-8ch-655350hz.flac"


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(nofile: int) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    data = Path(tempfile.mkdtemp(prefix="voiceid-bombs-"))
    key = secrets.token_urlsafe(32)
    port = free_port()
    env = {**os.environ, "VOICEID_DATA_DIR": str(data), "VOICEID_ADMIN_KEY": key}
    env.pop("VOICEID_DATABASE_URL", None)

    def limit_files() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    proc = subprocess.Popen(
        [sys.executable, "-c", "from voiceid.cli import app; app()", "serve", "--port", str(port)],
        env=env,
        preexec_fn=limit_files,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "server.log", "wb"),  # noqa: SIM115 - kept open for the child's lifetime
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(data / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url, key, data
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready in 180 s")


def bombs(real_flac: bool) -> list[tuple[str, Callable[[], tuple[bytes, str]]]]:
    def flac() -> tuple[bytes, str]:
        if not real_flac:
            return flac_bomb(), "audio/flac"
        if not FLAC_CACHE.exists():
            FLAC_CACHE.write_bytes(real_flac_bomb())  # about 20 s of encoding, once
        return FLAC_CACHE.read_bytes(), "audio/flac"

    return [
        ("μ-law 14 kB audio/basic;rate=12001", mulaw_odd_rate),
        ("L16 57 kB audio/L16;rate=24001", l16_odd_rate),
        ("L16 57 kB audio/L16;rate=383999", lambda: l16_odd_rate(rate=383_999)),
        ("FLAC 1 MB, 179 s x 8 ch x 655 350 Hz" if real_flac else "FLAC header 179 s x 8 ch x 655 350 Hz", flac),
        ("FLAC header 179 s x 2 ch x 192 kHz", lambda: (flac_bomb(rate=192_000, channels=2), "audio/flac")),
    ]


def send_bombs(url: str, key: str, pid: int | None, real_flac: bool) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    rows = ["| upload | bytes | answer | time (s) | server peak RSS growth (MB) |", "|---|---:|---|---:|---:|"]
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        r = http.put("/v1/speakers/bomb-target", json={"consent": {"granted": True, "text_version": "v1"}})
        assert r.status_code in (200, 201), r.text
        for name, make in bombs(real_flac):
            body, content_type = make()
            if pid is not None:
                reset_peak(pid)
                base = status_mb(pid, "VmRSS")
            started = time.monotonic()
            r = http.post(
                "/v1/speakers/bomb-target/enrolment-audio", content=body, headers={"Content-Type": content_type}
            )
            elapsed = time.monotonic() - started
            growth = f"{status_mb(pid, 'VmHWM') - base:.0f}" if pid is not None else "n/a"
            code = r.json().get("code", "") if r.headers.get("content-type", "").startswith("application/json") else ""
            rows.append(f"| {name} | {len(body):,} | {r.status_code} {code} | {elapsed:.2f} | {growth} |")
    return rows


@dataclass
class FloodResult:
    opened: dict[str, int] = field(default_factory=dict)
    closed_by_server: dict[str, int] = field(default_factory=dict)
    slowest_close_s: float = 0.0
    ready_ok: int = 0
    ready_failed: int = 0
    ready_slowest_s: float = 0.0


def _count(counts: dict[str, int], kind: str) -> None:
    counts[kind] = counts.get(kind, 0) + 1


async def _hold_tcp(host: str, port: int, payload: bytes, result: FloodResult, hold_s: float) -> None:
    kind = "half-sent headers" if payload else "idle TCP"
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    _count(result.opened, kind)
    opened = time.monotonic()
    until = opened + hold_s
    if payload:
        writer.write(payload)
    try:
        while time.monotonic() < until:
            chunk = await asyncio.wait_for(reader.read(4096), max(0.01, until - time.monotonic()))
            if not chunk:
                _count(result.closed_by_server, kind)
                result.slowest_close_s = max(result.slowest_close_s, time.monotonic() - opened)
                break
    except (TimeoutError, ConnectionError):
        pass
    writer.close()


async def _hold_ws(url: str, result: FloodResult, hold_s: float) -> None:
    try:
        async with connect(url, open_timeout=10) as ws:
            _count(result.opened, "WebSocket without start")
            opened = time.monotonic()
            until = opened + hold_s
            try:
                while time.monotonic() < until:
                    await asyncio.wait_for(ws.recv(), max(0.01, until - time.monotonic()))
            except TimeoutError:
                return
            except Exception:  # closed by the server: the point of the exercise
                _count(result.closed_by_server, "WebSocket without start")
                result.slowest_close_s = max(result.slowest_close_s, time.monotonic() - opened)
    except (OSError, TimeoutError, Exception):
        return


async def _probe(url: str, result: FloodResult, done: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while not done.is_set():
            started = time.monotonic()
            try:
                ok = (await http.get(url + "/readyz", headers={"Connection": "close"})).status_code == 200
            except httpx.HTTPError:
                ok = False
            result.ready_slowest_s = max(result.ready_slowest_s, time.monotonic() - started)
            if ok:
                result.ready_ok += 1
            else:
                result.ready_failed += 1
            await asyncio.sleep(0.25)


async def flood(url: str, n: int, hold_s: float, pid: int | None) -> tuple[FloodResult, float | None]:
    """Open `n` connections; each is watched for `hold_s` after it opened, /readyz polled throughout."""
    host, port = url.removeprefix("http://").split(":")
    result = FloodResult()
    done = asyncio.Event()
    if pid is not None:
        reset_peak(pid)
        base = status_mb(pid, "VmRSS")
    half = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    ws_url = url.replace("http://", "ws://") + "/v1/streams/twilio"
    probe = asyncio.create_task(_probe(url, result, done))
    tasks = []
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            tasks.append(asyncio.create_task(_hold_tcp(host, int(port), b"" if kind == 0 else half, result, hold_s)))
        else:
            tasks.append(asyncio.create_task(_hold_ws(ws_url, result, hold_s)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # a burst, not one syscall storm
    await asyncio.gather(*tasks)
    done.set()
    await probe
    growth = status_mb(pid, "VmHWM") - base if pid is not None else None
    return result, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (loopback); default: start one")
    parser.add_argument("--pid", type=int, help="its process id, for memory figures")
    parser.add_argument("--key", help="an admin API key of that server")
    parser.add_argument("--nofile", type=int, default=1024, help="soft file limit the started server gets")
    parser.add_argument("--flood", type=int, default=2000, help="idle connections opened")
    parser.add_argument("--flood-s", type=float, default=25.0, help="how long each flood connection waits to be closed")
    parser.add_argument("--real-flac", action="store_true", help="encode the full 1 MB FLAC bomb (about 20 s)")
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.", "http://localhost")):
        raise SystemExit("loopback targets only")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.flood * 2 + 256), hard))

    proc = None
    if args.url:
        url, key, pid = args.url, args.key, args.pid
    else:
        proc, url, key, data = start_server(args.nofile)
        pid = proc.pid
        print(f"server pid {pid} at {url}, data in {data}, soft file limit at start {args.nofile}")
    try:
        if pid is not None:
            print(f"server RSS before: {status_mb(pid, 'VmRSS'):.0f} MB")
        print("\n".join(send_bombs(url, key, pid, args.real_flac)))
        result, growth = asyncio.run(flood(url, args.flood, args.flood_s, pid))
        print(
            f"\nflood: {args.flood} connections, each held up to {args.flood_s:.0f} s (1/4 idle TCP, 1/4 half-sent "
            f"headers, 1/2 WebSockets that never send 'start')"
        )
        for kind, opened in sorted(result.opened.items()):
            print(f"- {kind}: {opened} opened, {result.closed_by_server.get(kind, 0)} closed by the server")
        print(f"- slowest close after open: {result.slowest_close_s:.1f} s")
        print(
            f"- /readyz during the flood: {result.ready_ok} x 200, {result.ready_failed} failed; "
            f"slowest {result.ready_slowest_s:.2f} s"
        )
        if growth is not None:
            print(f"- server peak RSS growth during the flood: {growth:.0f} MB")
        ready = httpx.get(url + "/readyz", timeout=10).status_code
        print(f"- /readyz after the flood: {ready}")
        if pid is not None:
            print(f"server RSS after: {status_mb(pid, 'VmRSS'):.0f} MB")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
