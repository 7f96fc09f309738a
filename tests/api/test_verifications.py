"""Verification decisions, lockout and the score log, on scripted embeddings (no model)."""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np

from voiceid.storage import models as m
from voiceid.testkit.api import count
from voiceid.testkit.engines import ScriptedEngine, unit

BASE = unit(1)


def at_cosine(target: float, seed: int = 99) -> np.ndarray:
    """A unit vector whose cosine with BASE is exactly `target`."""
    other = unit(seed)
    ortho = other - np.dot(other, BASE) * BASE
    ortho /= np.linalg.norm(ortho)
    return (target * BASE + np.sqrt(1 - target**2) * ortho).astype(np.float32)


def test_decisions_and_reasons(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, accept_threshold=0.45, reject_threshold=0.30, verify_min_speech_s=3.0)
    api.seed_voiceprint("caller-1", BASE)
    cases = {
        "accept": (0.80, 6.0, "ACCEPT", ["SCORE_ABOVE_ACCEPT_THRESHOLD"]),
        "between": (0.38, 6.0, "INCONCLUSIVE", ["SCORE_BETWEEN_THRESHOLDS"]),
        "reject": (0.05, 6.0, "REJECT", ["SCORE_BELOW_REJECT_THRESHOLD"]),
        "short": (0.80, 2.0, "INCONCLUSIVE", ["INSUFFICIENT_SPEECH", "SCORE_ABOVE_ACCEPT_THRESHOLD"]),
    }
    for name, (cos, speech, decision, reasons) in cases.items():
        body = engine.register(name.encode(), at_cosine(cos), net_speech_s=speech)
        got = api.verify("caller-1", body, content_type="audio/basic")
        assert got["decision"] == decision, name
        assert got["reasons"] == reasons, name
        assert abs(got["score"] - cos) < 1e-3  # responses carry rounded figures
        assert (got["accept_threshold"], got["reject_threshold"]) == (0.45, 0.30)
        assert got["net_speech_s"] == speech
        assert got["model_version"] == engine.model_version
        assert got["channel"] == "phone"
        assert len(got["verification_id"]) == 32


def test_not_enrolled_and_model_version_mismatch(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.put_speaker("enrolling")
    got = api.verify("enrolling", b"never decoded")
    assert (got["decision"], got["reasons"], got["score"]) == ("NOT_ENROLLED", ["NO_VOICEPRINT"], None)
    api.seed_voiceprint("old-model", BASE, model_version="ecapa-older-model")
    got = api.verify("old-model", b"never decoded")
    assert (got["decision"], got["reasons"], got["score"]) == ("NOT_ENROLLED", ["MODEL_VERSION_MISMATCH"], None)


def test_unknown_speaker_verification_is_404_and_not_logged(make_api, db):
    api = make_api()
    r = api.client.post(
        "/v1/speakers/nobody/verifications", content=b"x", headers={**api.h("ivr"), "Content-Type": "audio/wav"}
    )
    assert r.status_code == 404 and r.json()["code"] == "SPEAKER_NOT_FOUND"
    assert count(db, m.Verification) == 0


def test_lockout_after_consecutive_rejects_until_unlock_or_window(make_api):
    engine = ScriptedEngine()
    now = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC)]
    api = make_api(engine=engine, lockout_rejects=3, lockout_window_s=3600)
    api.service.clock = lambda: now[0]
    api.seed_voiceprint("caller-1", BASE)
    impostor = engine.register(b"impostor", at_cosine(0.0))
    genuine = engine.register(b"genuine", at_cosine(0.9))
    between = engine.register(b"between", at_cosine(0.4))

    # An ACCEPT ends a run of rejects; INCONCLUSIVE neither ends nor extends it.
    seq = [impostor, impostor, genuine, impostor, between, impostor]
    assert [api.verify("caller-1", b)["decision"] for b in seq] == [
        "REJECT",
        "REJECT",
        "ACCEPT",
        "REJECT",
        "INCONCLUSIVE",
        "REJECT",
    ]
    assert api.verify("caller-1", impostor)["decision"] == "REJECT"  # third in a row: locks
    locked = api.verify("caller-1", genuine)
    assert (locked["decision"], locked["reasons"], locked["score"]) == ("LOCKED", ["LOCKED_OUT"], None)
    assert api.client.get("/v1/speakers/caller-1", headers=api.h("enrolment")).json()["locked"] is True

    r = api.client.post("/v1/speakers/caller-1/unlock", headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["locked"] is False
    assert api.verify("caller-1", genuine)["decision"] == "ACCEPT"

    for _ in range(3):
        api.verify("caller-1", impostor)
    now[0] += timedelta(seconds=3599)
    assert api.verify("caller-1", genuine)["decision"] == "LOCKED"
    now[0] += timedelta(seconds=2)
    assert api.verify("caller-1", genuine)["decision"] == "ACCEPT"


def test_score_log_list_filters_pagination_and_csv(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, lockout_rejects=100)
    now = [datetime(2025, 3, 1, 9, 0, tzinfo=UTC)]
    api.service.clock = lambda: now[0]
    api.seed_voiceprint("alice", BASE)
    api.seed_voiceprint("bob", BASE)
    high = engine.register(b"high", at_cosine(0.9))
    low = engine.register(b"low", at_cosine(0.1))
    made = []
    for i in range(7):
        now[0] += timedelta(minutes=1)
        made.append(api.verify("alice" if i % 2 == 0 else "bob", high if i < 4 else low))

    def get(**params):
        r = api.client.get("/v1/verifications", params=params, headers=api.h("analyst"))
        assert r.status_code == 200, r.text
        return r.json()

    everything = get(limit=1000)
    assert [v["verification_id"] for v in everything["items"]] == [v["verification_id"] for v in reversed(made)]
    assert everything["next_cursor"] is None
    first = everything["items"][0]
    assert first["speaker_id"] == "alice" and first["created_at"].startswith("2025-03-01T09:07")
    assert first["quality"]["channel"] == "phone"

    pages, cursor = [], None
    while True:
        page = get(limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append([v["verification_id"] for v in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == [v["verification_id"] for v in everything["items"]]

    assert {v["speaker_id"] for v in get(speaker_id="bob")["items"]} == {"bob"}
    assert len(get(speaker_id="bob")["items"]) == 3
    assert len(get(decision="REJECT")["items"]) == 3
    below = get(reason="SCORE_BELOW_REJECT_THRESHOLD")["items"]
    assert len(below) == 3 and all("SCORE_BELOW_REJECT_THRESHOLD" in v["reasons"] for v in below)
    assert get(reason="WATCHLIST_MATCH")["items"] == []
    bad_reason = api.client.get("/v1/verifications", params={"reason": "%"}, headers=api.h("analyst"))
    assert bad_reason.status_code == 422
    assert len(get(min_score=0.5)["items"]) == 4
    assert len(get(max_score=0.5)["items"]) == 3
    assert len(get(since="2025-03-01T09:03:00Z", until="2025-03-01T09:05:00Z")["items"]) == 2
    assert len(get(since="2025-03-01T09:03:00")["items"]) == 5  # no zone means UTC

    one = api.client.get(f"/v1/verifications/{made[0]['verification_id']}", headers=api.h("analyst"))
    assert one.status_code == 200 and one.json()["score"] == made[0]["score"]
    missing = api.client.get("/v1/verifications/does-not-exist", headers=api.h("analyst"))
    assert missing.status_code == 404 and missing.json()["code"] == "VERIFICATION_NOT_FOUND"
    bad = api.client.get("/v1/verifications", params={"cursor": "garbage"}, headers=api.h("analyst"))
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_REQUEST"
    bad = api.client.get("/v1/verifications", params={"decision": "MAYBE"}, headers=api.h("analyst"))
    assert bad.status_code == 422 and bad.json()["code"] == "INVALID_REQUEST"

    r = api.client.get("/v1/verifications.csv", params={"decision": "ACCEPT"}, headers=api.h("analyst"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4 and {row["decision"] for row in rows} == {"ACCEPT"}
    assert rows[0]["reasons"] == "SCORE_ABOVE_ACCEPT_THRESHOLD" and float(rows[0]["accept_threshold"]) == 0.45


class BlockingEngine(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def analyse(self, data, content_type):
        self.started.set()
        assert self.release.wait(30)
        return super().analyse(data, content_type)


def test_saturated_pool_answers_503_with_retry_after(make_api, db):
    engine = BlockingEngine()
    api = make_api(engine=engine, inference_workers=1, inference_queue=0)
    api.seed_voiceprint("caller-1", BASE)
    body = engine.register(b"probe", at_cosine(0.9))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(api.verify, "caller-1", body)
        assert engine.started.wait(30)
        r = api.client.post(
            "/v1/speakers/caller-1/verifications", content=body, headers={**api.h("ivr"), "Content-Type": "audio/wav"}
        )
        assert r.status_code == 503
        assert r.json()["code"] == "OVERLOADED" and r.headers["Retry-After"] == "1"
        engine.release.set()
        assert first.result(30)["decision"] == "ACCEPT"
    assert count(db, m.Verification) == 1  # the refused request left no trace
    assert api.verify("caller-1", body)["decision"] == "ACCEPT"  # capacity is back
