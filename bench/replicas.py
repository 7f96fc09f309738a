"""Verifications through HAProxy with 1, 2 and 3 `serve` replicas on one PostgreSQL database, and the
change-feed delay from a write on one replica to a decision that uses it on another.

The replicas run the product app with the hashing engine of voiceid/testkit/fake_replica.py (no ECAPA
inference), so the figures are the cost of everything around the model: HTTP, load balancer,
authentication, database transactions, caches, score log. Add the model's per-verification CPU time
(`bench/verification_cost.py`: about 0.32 core·s per verification) for the full cost; docs/deploy.md does.

    python bench/replicas.py --replicas 1 2 3 --seconds 20 --clients 8

Needs PostgreSQL on 127.0.0.1:5432 and Debian's haproxy (scripts/ensure-services.sh). Creates and
drops a database of its own per configuration. Bounded: about (start-up + seconds + 15) s per
configuration.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voiceid.testkit import topology
from voiceid.testkit.fake_replica import voice
from voiceid.testkit.postgres import postgres_database

AUDIO = {"Content-Type": "audio/basic"}
CONSENT = {"consent": {"granted": True, "text_version": "v1", "channel": "phone"}}
SPEAKERS = 40


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"})


def _keys(lb: str) -> dict[str, str]:
    keys = {}
    with _client(lb, topology.ADMIN_KEY) as http:
        for role in ("ivr", "enrolment", "analyst"):
            keys[role] = http.post("/v1/api-keys", json={"role": role}).json()["key"]
    return keys


def _enrol(http: httpx.Client, speaker: str) -> None:
    http.put(f"/v1/speakers/{speaker}", json=CONSENT).raise_for_status()
    r = http.post(f"/v1/speakers/{speaker}/enrolment-audio", content=voice(speaker, "e"), headers=AUDIO)
    r.raise_for_status()


def load(lb: str, key: str, clients: int, seconds: float) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run(worker: int) -> None:
        n = 0
        with _client(lb, key) as http:
            while time.monotonic() < stop_at:
                speaker = f"spk-{(worker * 7 + n) % SPEAKERS:03d}"
                started = time.perf_counter()
                r = http.post(
                    f"/v1/speakers/{speaker}/verifications", content=voice(speaker, f"{worker}-{n}"), headers=AUDIO
                )
                elapsed = time.perf_counter() - started
                with lock:
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        latencies.append(elapsed)
                n += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, codes


def change_feed_delay(topo: topology.Topology, keys: dict[str, str], trials: int) -> list[float]:
    """Enrol a speaker, then put that speaker's own voice on the watchlist through replica r0 and verify
    the speaker through r1 until r1's answer carries the watchlist hit: the time until r1 decides with
    the write (the watchlist reaches a replica only through the change feed). Genuine calls, so no
    lockout builds up while r1 is asked again and again. (The population cohort is no measure of this
    since it became a snapshot the worker refreshes: one enrolment no longer moves a score.)"""
    delays = []
    with (
        _client(topo.replica_url("r0"), keys["enrolment"]) as enrol,
        _client(topo.replica_url("r0"), keys["analyst"]) as analyst,
        _client(topo.replica_url("r1"), keys["ivr"]) as r1,
    ):

        def hits(speaker: str) -> int:
            r = r1.post(f"/v1/speakers/{speaker}/verifications", content=voice(speaker, "call"), headers=AUDIO)
            r.raise_for_status()
            return len(r.json()["watchlist_hits"])

        phase = random.Random(11)
        for trial in range(trials):
            speaker = f"delay-{trial}"
            _enrol(enrol, speaker)
            time.sleep(topology.CHANGE_POLL_S * 2)  # r1 has the voiceprint
            if hits(speaker):  # also syncs r1 now: its next look at the feed is one poll away
                raise RuntimeError(f"{speaker} is on the watchlist before it was added")
            time.sleep(phase.uniform(0, topology.CHANGE_POLL_S))  # the write at a random point of that wait
            r = analyst.post("/v1/watchlist", params={"label": speaker}, content=voice(speaker, "w"), headers=AUDIO)
            r.raise_for_status()
            written = time.perf_counter()
            while not hits(speaker):
                if time.perf_counter() - written > 10:
                    raise TimeoutError("the write never reached the other replica")
            delays.append(time.perf_counter() - written)
    return delays


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--delay-trials", type=int, default=10)
    args = parser.parse_args()
    if topology.haproxy_binary() is None:
        sys.exit("haproxy is not installed (bash scripts/ensure-services.sh)")
    print("| replicas | verifications/s | p50 | p95 | answers |")
    print("|---:|---:|---:|---:|---|")
    delays: list[float] = []
    for n in args.replicas:
        with tempfile.TemporaryDirectory() as workdir, postgres_database("voiceid_bench") as url:
            topo = topology.start(Path(workdir), url, replicas=n)
            try:
                keys = _keys(topo.lb_url)
                with _client(topo.lb_url, keys["enrolment"]) as http:
                    for i in range(SPEAKERS):
                        _enrol(http, f"spk-{i:03d}")
                load(topo.lb_url, keys["ivr"], args.clients, 2.0)  # warm-up: caches, connections
                latencies, codes = load(topo.lb_url, keys["ivr"], args.clients, args.seconds)
                rate = len(latencies) / args.seconds
                print(
                    f"| {n} | {rate:.1f} | {statistics.median(latencies) * 1000:.0f} ms | "
                    f"{pct(latencies, 0.95) * 1000:.0f} ms | {dict(sorted(codes.items()))} |",
                    flush=True,
                )
                if n >= 2 and not delays:
                    delays = change_feed_delay(topo, keys, args.delay_trials)
            finally:
                topo.stop()
    if delays:
        print(
            f"\nchange-feed delay (write on r0 -> decision on r1 uses it), {len(delays)} trials: "
            f"median {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
            f"(VOICEID_CHANGE_POLL_S = {topology.CHANGE_POLL_S})"
        )


if __name__ == "__main__":
    main()
