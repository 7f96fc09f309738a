"""Watchlist screening, duplicate identities, retention and roles through the real API, on scripted
embeddings (the decision logic is under test, not the model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from tests.fraud.conftest import llr_at
from voiceid.storage import fraud_repo
from voiceid.storage import models as m
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import count
from voiceid.testkit.engines import ScriptedEngine, unit

VICTIM = unit(1)
FRAUDSTER = unit(2)


def mix(*vectors: np.ndarray) -> np.ndarray:
    v = np.sum(vectors, axis=0)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    other = unit(seed)
    ortho = other - np.dot(other, vector) * vector
    ortho /= np.linalg.norm(ortho)
    return (cosine * vector + np.sqrt(1 - cosine**2) * ortho).astype(np.float32)


def flag(api, verification_id: str, label: str = "ring-A") -> dict:
    r = api.client.post(
        "/v1/watchlist",
        json={"verification_id": verification_id, "label": label, "note": "called as three customers"},
        headers=api.h("analyst"),
    )
    assert r.status_code == 201, r.text
    return r.json()


def fraudster_flagged(api, engine: ScriptedEngine) -> dict:
    """The fraudster's first call (as 'mule') is flagged by an analyst."""
    api.seed_voiceprint("mule", FRAUDSTER)
    first = api.verify("mule", engine.register(b"first-call", near(FRAUDSTER, 0.95, 10)), "audio/basic")
    return flag(api, first["verification_id"])


@pytest.mark.parametrize("action", ["reject", "flag"])
def test_watchlisted_voice_is_caught_under_another_identity(make_api, action):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), watchlist_action=action)
    entry = fraudster_flagged(api, engine)
    api.seed_voiceprint("victim", VICTIM)
    # The fraudster's voice, close enough to the victim's to pass on score alone (cos ~0.7 to each).
    probe = engine.register(b"attack", mix(near(FRAUDSTER, 0.95, 11), VICTIM))
    got = api.verify("victim", probe, "audio/basic")
    assert got["score"] >= 0.45
    assert got["decision"] == ("REJECT" if action == "reject" else "ACCEPT")
    assert got["reasons"] == ["SCORE_ABOVE_ACCEPT_THRESHOLD", "WATCHLIST_MATCH"]
    [hit] = got["watchlist_hits"]
    assert (hit["entry_id"], hit["label"]) == (entry["entry_id"], "ring-A")
    assert hit["raw_score"] > 0.5 and hit["llr"] >= llr_at(0.5)
    logged = api.client.get(f"/v1/verifications/{got['verification_id']}", headers=api.h("analyst")).json()
    assert logged["watchlist_hits"] == got["watchlist_hits"]
    assert logged["decision"] == got["decision"]


def test_innocent_caller_is_not_flagged(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5))
    fraudster_flagged(api, engine)
    api.seed_voiceprint("victim", VICTIM)
    got = api.verify("victim", engine.register(b"genuine", near(VICTIM, 0.8, 12)), "audio/basic")
    assert (got["decision"], got["reasons"], got["watchlist_hits"]) == (
        "ACCEPT",
        ["SCORE_ABOVE_ACCEPT_THRESHOLD"],
        [],
    )


def test_entries_of_another_model_version_are_never_compared(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5))
    with api.service.db.transaction() as session:
        fraud_repo.add_watchlist_entry(
            session,
            api.service.cipher,
            FRAUDSTER,
            "ecapa-older-model",
            label="old",
            source="audio",
            created_at=datetime.now(UTC),
        )
        fraud_repo.bump_watchlist_generation(session)
    api.seed_voiceprint("mule", FRAUDSTER)
    got = api.verify("mule", engine.register(b"same-voice", FRAUDSTER), "audio/basic")
    assert got["watchlist_hits"] == [] and "WATCHLIST_MATCH" not in got["reasons"]


def test_watchlist_changes_reach_another_process_and_deletion_stops_hits(make_api):
    engine = ScriptedEngine()
    key = SecretStr(generate_key_text())
    desk_api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), encryption_key=key)
    # A second worker on the same database (and key), with its own in-memory index.
    ivr_api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), encryption_key=key)
    ivr_api.seed_voiceprint("victim", VICTIM)
    probe = engine.register(b"attack", near(FRAUDSTER, 0.8, 13))
    assert ivr_api.verify("victim", probe, "audio/basic")["watchlist_hits"] == []  # loads its (empty) index
    entry = fraudster_flagged(desk_api, engine)
    assert [h["entry_id"] for h in ivr_api.verify("victim", probe, "audio/basic")["watchlist_hits"]] == [
        entry["entry_id"]
    ]
    listed = desk_api.client.get("/v1/watchlist", headers=desk_api.h("analyst")).json()
    assert [e["entry_id"] for e in listed] == [entry["entry_id"]]
    assert listed[0]["source"] == "verification" and listed[0]["speaker_id"] == "mule"
    r = desk_api.client.delete(f"/v1/watchlist/{entry['entry_id']}", headers=desk_api.h("analyst"))
    assert r.status_code == 204
    assert ivr_api.verify("victim", probe, "audio/basic")["watchlist_hits"] == []
    assert (
        desk_api.client.delete(f"/v1/watchlist/{entry['entry_id']}", headers=desk_api.h("analyst")).status_code == 404
    )


def test_watchlist_entry_from_uploaded_audio(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), watchlist_action="reject")
    body = engine.register(b"recorded-fraud-call", FRAUDSTER)
    r = api.client.post(
        "/v1/watchlist?label=known%20fraudster&note=from%20bank%20B",
        content=body,
        headers={**api.h("analyst"), "Content-Type": "audio/basic"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["source"], r.json()["label"], r.json()["note"]) == ("audio", "known fraudster", "from bank B")
    api.seed_voiceprint("victim", VICTIM)
    got = api.verify("victim", engine.register(b"call", near(FRAUDSTER, 0.75, 14)), "audio/basic")
    assert got["decision"] == "REJECT" and got["watchlist_hits"][0]["label"] == "known fraudster"
    missing_label = api.client.post(
        "/v1/watchlist", content=body, headers={**api.h("analyst"), "Content-Type": "audio/basic"}
    )
    assert missing_label.status_code == 422


def test_flagging_needs_a_kept_embedding(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.put_speaker("enrolling")
    unscored = api.verify("enrolling", b"never decoded")
    r = api.client.post(
        "/v1/watchlist", json={"verification_id": unscored["verification_id"], "label": "x"}, headers=api.h("analyst")
    )
    assert (r.status_code, r.json()["code"]) == (409, "EMBEDDING_NOT_AVAILABLE")
    r = api.client.post("/v1/watchlist", json={"verification_id": "nope", "label": "x"}, headers=api.h("analyst"))
    assert (r.status_code, r.json()["code"]) == (404, "VERIFICATION_NOT_FOUND")


ENDPOINTS = [
    ("POST", "/v1/watchlist"),
    ("GET", "/v1/watchlist"),
    ("DELETE", "/v1/watchlist/some-entry"),
    ("GET", "/v1/review-queue"),
    ("POST", "/v1/review-queue/some-item/resolve"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_fraud_endpoints_refused_to_ivr_and_enrolment_roles(make_api, method, path):
    api = make_api()
    body = {"verification_id": "x", "label": "y"} if method == "POST" else None
    for role in ("ivr", "enrolment"):
        r = api.client.request(method, path, json=body, headers=api.h(role))
        assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN"), (role, r.text)
    r = api.client.request(method, path, json=body)
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHENTICATED")
    assert count(api.service.db, m.WatchlistEntry) == 0


# --- enrolment screening and duplicate identities ----------------------------------------------


def enrol(api, speaker_id: str, body: bytes):
    api.put_speaker(speaker_id)
    return api.client.post(
        f"/v1/speakers/{speaker_id}/enrolment-audio",
        content=body,
        headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
    )


def queue(api, status: str = "OPEN") -> list[dict]:
    r = api.client.get(f"/v1/review-queue?status={status}", headers=api.h("analyst"))
    assert r.status_code == 200, r.text
    return r.json()


def test_duplicate_enrolment_is_held_for_review_then_released(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6))
    api.seed_voiceprint("alice", VICTIM)
    r = enrol(api, "alice-2", engine.register(b"alice-again", near(VICTIM, 0.85, 20)))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reasons"]) == ("REVIEW_REQUIRED", ["DUPLICATE_IDENTITY"])
    [item] = queue(api)
    assert (item["kind"], item["speaker_id"], item["matched_ref"]) == ("DUPLICATE_IDENTITY", "alice-2", "alice")
    assert item["score"] == pytest.approx(llr_at(0.85), abs=0.01)  # calibrated LLR, phone scale
    # Held: a verification against the held identity is not scored.
    got = api.verify("alice-2", b"not decoded while held")
    assert (got["decision"], got["reasons"]) == ("NOT_ENROLLED", ["ENROLMENT_UNDER_REVIEW"])
    r = api.client.post(
        f"/v1/review-queue/{item['item_id']}/resolve", json={"action": "approve"}, headers=api.h("analyst")
    )
    assert r.status_code == 200 and r.json()["status"] == "APPROVED"
    assert api.client.get("/v1/speakers/alice-2", headers=api.h("enrolment")).json()["status"] == "ENROLLED"
    assert queue(api) == []


def test_distinct_voice_enrols_normally(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6))
    api.seed_voiceprint("alice", VICTIM)
    r = enrol(api, "bob", engine.register(b"bob", unit(30)))
    assert (r.json()["status"], r.json()["reasons"]) == ("ENROLLED", [])
    assert queue(api, "ALL") == []


def test_duplicate_enrolment_refused_by_setting_keeps_no_biometrics(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6), duplicate_action="refuse")
    api.seed_voiceprint("alice", VICTIM)
    r = enrol(api, "alias", engine.register(b"alias", near(VICTIM, 0.9, 21)))
    assert (r.status_code, r.json()["code"]) == (409, "ENROLMENT_REFUSED")
    speaker = api.client.get("/v1/speakers/alias", headers=api.h("enrolment")).json()
    assert (speaker["status"], speaker["model_version"], speaker["net_speech_s"]) == ("ENROLLING", None, 0.0)
    assert [i["status"] for i in queue(api, "REFUSED")] == ["REFUSED"]


def test_enrolment_screened_against_watchlist(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), watchlist_action="reject")
    entry = fraudster_flagged(api, engine)
    r = enrol(api, "new-customer", engine.register(b"fraud-enrol", near(FRAUDSTER, 0.8, 22)))
    assert (r.status_code, r.json()["code"]) == (409, "ENROLMENT_REFUSED")
    assert r.json()["details"]["watchlist_hits"][0]["entry_id"] == entry["entry_id"]
    assert count(api.service.db, m.EnrolmentEmbedding) == 0
    [item] = queue(api, "REFUSED")
    assert (item["kind"], item["speaker_id"], item["matched_ref"]) == (
        "WATCHLIST_MATCH",
        "new-customer",
        entry["entry_id"],
    )


def test_enrolment_watchlist_hit_only_flagged_by_setting(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5), watchlist_action="flag")
    fraudster_flagged(api, engine)
    r = enrol(api, "new-customer", engine.register(b"fraud-enrol", near(FRAUDSTER, 0.8, 22)))
    assert r.status_code == 200
    assert r.json()["watchlist_hits"][0]["label"] == "ring-A"
    # The fraudster is also enrolled as 'mule', so the new identity is a duplicate as well: held.
    assert r.json()["reasons"] == ["WATCHLIST_MATCH", "DUPLICATE_IDENTITY"]
    assert r.json()["status"] == "REVIEW_REQUIRED"
    assert sorted(i["kind"] for i in queue(api)) == ["DUPLICATE_IDENTITY", "WATCHLIST_MATCH"]


# --- retention ------------------------------------------------------------------------------------


def test_retention_purge_removes_exactly_the_expired_embeddings(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, attempt_retention_days=20)
    api.seed_voiceprint("caller", VICTIM)
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    ids = {}
    for days in (0, 10, 25):
        api.service.clock = lambda days=days: t0 + timedelta(days=days)
        ids[days] = api.verify("caller", engine.register(f"call-{days}".encode(), near(VICTIM, 0.8, 40 + days)))[
            "verification_id"
        ]
    desk_now = t0 + timedelta(days=30)  # expiries: day 20 (past), day 30 (exactly now: expired), day 45
    api.service.clock = lambda: desk_now
    # Past its time an embedding is unusable even before the purge runs.
    r = api.client.post("/v1/watchlist", json={"verification_id": ids[0], "label": "x"}, headers=api.h("analyst"))
    assert r.json()["code"] == "EMBEDDING_NOT_AVAILABLE"

    assert api.service.desk.purge_expired() == 2
    with api.service.db.transaction() as session:
        left = {row.verification_id for row in session.query(m.AttemptEmbedding)}
    assert left == {ids[25]}
    assert api.service.desk.purge_expired() == 0
    assert count(api.service.db, m.Verification) == 3  # the score log itself is not touched


def test_erasing_a_speaker_removes_their_attempt_embeddings_at_once(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("leaving", VICTIM)
    api.seed_voiceprint("staying", FRAUDSTER)
    api.verify("leaving", engine.register(b"a", near(VICTIM, 0.8, 50)))
    kept = api.verify("staying", engine.register(b"b", near(FRAUDSTER, 0.8, 51)))["verification_id"]
    assert count(api.service.db, m.AttemptEmbedding) == 2
    assert api.client.delete("/v1/speakers/leaving", headers=api.h("enrolment")).status_code == 204
    with api.service.db.transaction() as session:
        assert [row.verification_id for row in session.query(m.AttemptEmbedding)] == [kept]
