"""Three `serve` replicas and one worker on one PostgreSQL database behind HAProxy, driven through the
load balancer while one replica is killed (SIGKILL) mid-load. Checks: no acknowledged write lost, no
5xx other than 503, every replica decides a given probe identically, and an erasure made on one
replica is honoured by another within the documented delay (VOICEID_CHANGE_POLL_S).

The replicas run the product app with a hashing embedding engine (voiceid/testkit/fake_replica.py):
three ECAPA processes would not fit this machine's two cores beside the load generator."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from voiceid.testkit import topology
from voiceid.testkit.fake_replica import voice

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

AUDIO = {"Content-Type": "audio/basic"}
CONSENT = {"consent": {"granted": True, "text_version": "v1", "channel": "phone"}}


@dataclass
class Ledger:
    """Every answer seen, and every write the service acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    codes: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    enrolled: set[str] = field(default_factory=set)
    opted_out: set[str] = field(default_factory=set)
    verifications: dict[str, str] = field(default_factory=dict)  # id -> decision
    watchlist: set[str] = field(default_factory=set)

    def call(self, http: httpx.Client, method: str, url: str, tries: int = 5, **kw: object) -> httpx.Response | None:
        """One logical request; retried on 503 (the only 5xx allowed), as a client would."""
        for _ in range(tries):
            try:
                response = http.request(method, url, **kw)  # type: ignore[arg-type]
            except httpx.HTTPError as exc:
                with self.lock:
                    self.errors.append(f"{method} {url}: {exc!r}")
                return None
            with self.lock:
                self.codes[response.status_code] += 1
            if response.status_code != 503:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")) / 4)
        return None


def _keys(lb: str) -> dict[str, str]:
    keys = {"admin": topology.ADMIN_KEY}
    with httpx.Client(base_url=lb, timeout=30, headers={"Authorization": f"Bearer {topology.ADMIN_KEY}"}) as http:
        for role in ("ivr", "enrolment", "analyst"):
            r = http.post("/v1/api-keys", json={"role": role})
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
    return keys


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"})


def _enrol(ledger: Ledger, http: httpx.Client, speaker: str, voice_of: str | None = None) -> httpx.Response | None:
    r = ledger.call(http, "PUT", f"/v1/speakers/{speaker}", json=CONSENT)
    if r is None or r.status_code not in (200, 201):
        return r
    r = ledger.call(
        http, "POST", f"/v1/speakers/{speaker}/enrolment-audio", content=voice(voice_of or speaker, "e"), headers=AUDIO
    )
    if r is not None and r.status_code == 200 and r.json()["status"] == "ENROLLED":
        with ledger.lock:
            ledger.enrolled.add(speaker)
    return r


def test_three_replicas_one_worker_behind_haproxy(fresh_postgres, tmp_path):
    if topology.haproxy_binary() is None:
        pytest.skip("haproxy is not installed (scripts/ensure-services.sh installs Debian's package)")
    url = fresh_postgres()
    topo = topology.start(tmp_path / "topology", url, replicas=3, workers=2)
    try:
        _drive_and_check(topo)
        _webhooks_delivered_once_by_two_workers(topo, url)
    except BaseException:
        for name in topo.processes:
            print(f"--- {name} log ---\n{topo.log(name)}")
        raise
    finally:
        topo.stop()


def _drive_and_check(topo: topology.Topology) -> None:
    keys = _keys(topo.lb_url)
    ledger = Ledger()
    enrolment = _client(topo.lb_url, keys["enrolment"])
    ivr = _client(topo.lb_url, keys["ivr"])
    analyst = _client(topo.lb_url, keys["analyst"])

    # 1. Enrol a population through the load balancer (spread over the three replicas).
    speakers = [f"spk-{i:03d}" for i in range(24)]
    for speaker in speakers:
        r = _enrol(ledger, enrolment, speaker)
        assert r is not None and r.status_code == 200 and r.json()["status"] == "ENROLLED", r and r.text
    stable = speakers[:12]  # never opted out: the determinism and erasure checks use them
    churn = speakers[12:]

    # 2. Mixed load from 6 clients; replica r1 is killed (SIGKILL) a third of the way in.
    rng = random.Random(11)
    plan: list[tuple[str, str]] = []
    for i in range(150):
        kind = rng.choice(["genuine", "genuine", "impostor", "enrol", "optout", "watchlist"])
        plan.append((kind, str(i)))
    cursor = iter(enumerate(plan))
    cursor_lock = threading.Lock()
    killed = threading.Event()

    def client_loop() -> None:
        with (
            _client(topo.lb_url, keys["ivr"]) as ivr_c,
            _client(topo.lb_url, keys["enrolment"]) as enr_c,
            _client(topo.lb_url, keys["analyst"]) as an_c,
        ):
            while True:
                with cursor_lock:
                    item = next(cursor, None)
                if item is None:
                    return
                n, (kind, tag) = item
                if n == 50 and not killed.is_set():
                    killed.set()
                    topo.kill("r1")
                _one(ledger, kind, tag, n, stable, churn, ivr_c, enr_c, an_c)

    threads = [threading.Thread(target=client_loop) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert killed.is_set()
    assert ledger.errors == [], ledger.errors[:5]
    bad = {code: n for code, n in ledger.codes.items() if code >= 500 and code != 503}
    assert bad == {}, f"5xx other than 503: {bad} (all answers: {dict(ledger.codes)})"
    assert ledger.codes[200] + ledger.codes[201] > 100, dict(ledger.codes)
    print(f"answers through the load balancer: {dict(sorted(ledger.codes.items()))}")

    # 3. No acknowledged write lost (read back through the load balancer, from the survivors).
    for verification_id, decision in ledger.verifications.items():
        r = analyst.get(f"/v1/verifications/{verification_id}")
        assert r.status_code == 200 and r.json()["decision"] == decision, r.text
    for speaker in ledger.enrolled - ledger.opted_out:
        assert enrolment.get(f"/v1/speakers/{speaker}").json()["status"] == "ENROLLED", speaker
    for speaker in ledger.opted_out:
        assert enrolment.get(f"/v1/speakers/{speaker}").json()["status"] == "OPTED_OUT", speaker
    listed = {e["entry_id"] for e in analyst.get("/v1/watchlist").json()}
    assert ledger.watchlist and ledger.watchlist <= listed

    # 4. Every surviving replica decides a given probe identically (after the documented delay).
    time.sleep(topology.CHANGE_POLL_S * 4)
    survivors = ["r0", "r2"]
    direct = {name: _client(topo.replica_url(name), keys["ivr"]) for name in survivors}
    probes = [(s, voice(s, "probe")) for s in stable[:4]] + [(s, voice("stranger", s)) for s in stable[4:8]]
    probes.append((stable[8], voice("fraudster-0", "probe")))  # a watchlisted voice
    for speaker, body in probes:
        answers = []
        for name in survivors:
            r = direct[name].post(f"/v1/speakers/{speaker}/verifications", content=body, headers=AUDIO)
            assert r.status_code == 200, r.text
            v = r.json()
            answers.append(
                (v["decision"], v["score"], v["raw_score"], sorted(h["entry_id"] for h in v["watchlist_hits"]))
            )
        assert answers[0] == answers[1], (speaker, answers)
    decisions = Counter(a[0] for a in answers)
    assert decisions  # at least one probe answered

    # 5. An erasure on one replica is honoured by another within the documented delay.
    r0 = _client(topo.replica_url("r0"), keys["enrolment"])
    r2 = _client(topo.replica_url("r2"), keys["enrolment"])
    admin_r0 = _client(topo.replica_url("r0"), keys["admin"])
    target = stable[11]
    # Control: while the voiceprint exists, r2 holds a new speaker with the same voice as a duplicate.
    control = _enrol(ledger, r2, "dup-control", voice_of=target)
    assert control is not None and control.status_code == 200
    assert control.json()["status"] == "REVIEW_REQUIRED" and "DUPLICATE_IDENTITY" in control.json()["reasons"]
    # Erase both copies of that voice on r0 (opt-out of the original, deletion of the duplicate) ...
    assert r0.post(f"/v1/speakers/{target}/opt-out").status_code == 200
    assert admin_r0.delete("/v1/speakers/dup-control").status_code == 204
    erased_at = time.monotonic()
    time.sleep(topology.CHANGE_POLL_S * 2)
    # ... and r2 no longer finds that voice: the new enrolment is not held as a duplicate.
    after = _enrol(ledger, r2, "after-erasure", voice_of=target)
    assert after is not None and after.status_code == 200, after and after.text
    assert after.json()["status"] == "ENROLLED" and "DUPLICATE_IDENTITY" not in after.json()["reasons"], after.json()
    assert time.monotonic() - erased_at < 10
    for client in (enrolment, ivr, analyst, r0, r2, admin_r0, *direct.values()):
        client.close()


def _webhooks_delivered_once_by_two_workers(topo: topology.Topology, database_url: str) -> None:
    """Outcome webhooks written to the outbox are delivered by the two `voiceid worker` processes:
    each exactly once (SKIP LOCKED claims, per-tick locks), signed."""
    from datetime import UTC, datetime

    from tests.replicas.test_webhooks import Receiver
    from voiceid.storage.db import Database
    from voiceid.webhooks import signing
    from voiceid.webhooks.outbox import enqueue

    hook = Receiver([])
    db = Database(database_url)
    try:
        with db.transaction() as session:
            for i in range(20):
                enqueue(session, f"call-{i}", hook.url, {"call_id": f"call-{i}"}, datetime.now(UTC))
        deadline = time.monotonic() + 60
        while len(hook.received) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a duplicate would arrive now
        bodies = [json.loads(body)["call_id"] for _, body in hook.received]
        assert sorted(bodies) == sorted(f"call-{i}" for i in range(20)), bodies
        for headers, body in hook.received:
            stamp = int(headers[signing.TIMESTAMP_HEADER])
            secret = topology.WEBHOOK_SECRET.encode()
            assert signing.verify(secret, stamp, body, headers[signing.SIGNATURE_HEADER], now=stamp)
        for name in ("worker0", "worker1"):
            assert topo.processes[name].poll() is None, topo.log(name)
    finally:
        hook.close()
        db.dispose()


def _one(
    ledger: Ledger,
    kind: str,
    tag: str,
    n: int,
    stable: list[str],
    churn: list[str],
    ivr: httpx.Client,
    enrolment: httpx.Client,
    analyst: httpx.Client,
) -> None:
    rng = random.Random(n)
    if kind in ("genuine", "impostor"):
        speaker = rng.choice(stable)
        body = voice(speaker, f"v{tag}") if kind == "genuine" else voice(f"impostor-{tag}", "x")
        r = ledger.call(ivr, "POST", f"/v1/speakers/{speaker}/verifications", content=body, headers=AUDIO)
        if r is not None:
            assert r.status_code == 200, r.text
            with ledger.lock:
                ledger.verifications[r.json()["verification_id"]] = r.json()["decision"]
    elif kind == "enrol":
        r = _enrol(ledger, enrolment, f"new-{tag}")
        assert r is None or r.status_code == 200, r.text
    elif kind == "optout":
        speaker = rng.choice(churn)
        r = ledger.call(enrolment, "POST", f"/v1/speakers/{speaker}/opt-out")
        if r is not None:
            assert r.status_code == 200, r.text
            with ledger.lock:
                ledger.opted_out.add(speaker)
    elif kind == "watchlist":
        r = ledger.call(
            analyst,
            "POST",
            "/v1/watchlist",
            params={"label": f"fraud-{tag}"},
            content=voice(f"fraudster-{n % 3}", tag),
            headers=AUDIO,
        )
        if r is not None:
            assert r.status_code == 201, r.text
            with ledger.lock:
                ledger.watchlist.add(r.json()["entry_id"])
