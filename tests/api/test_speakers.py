"""Speakers and consent: PUT/GET, opt-out, reset, delete (no model needed)."""

from __future__ import annotations

import pytest

from voiceid.storage import models as m
from voiceid.testkit.api import count
from voiceid.testkit.engines import ScriptedEngine, unit


def test_put_creates_then_confirms(make_api):
    api = make_api()
    body = {"consent": {"granted": True, "text_version": "consent-2024-01", "channel": "phone"}}
    first = api.client.put("/v1/speakers/cust:42.a_b-c", json=body, headers=api.h("enrolment"))
    assert first.status_code == 201, first.text
    again = api.client.put("/v1/speakers/cust:42.a_b-c", json=body, headers=api.h("enrolment"))
    assert again.status_code == 200
    got = api.client.get("/v1/speakers/cust:42.a_b-c", headers=api.h("enrolment")).json()
    assert got["speaker_id"] == "cust:42.a_b-c"
    assert got["status"] == "ENROLLING"
    assert got["net_speech_s"] == 0 and got["required_speech_s"] == 4.0
    assert got["model_version"] is None
    assert got["consent"]["granted"] is True and got["consent"]["text_version"] == "consent-2024-01"
    assert got["consent"]["channel"] == "phone" and got["consent"]["granted_at"]
    assert got["created_at"]


@pytest.mark.parametrize(
    "body",
    [{}, {"consent": None}, {"consent": {"text_version": "v1"}}, {"consent": {"granted": False, "text_version": "v1"}}],
    ids=["no consent", "null consent", "granted absent", "granted false"],
)
def test_put_without_consent_is_refused(make_api, db, body):
    api = make_api()
    r = api.client.put("/v1/speakers/caller-1", json=body, headers=api.h("enrolment"))
    assert r.status_code == 422
    assert r.json()["code"] == "CONSENT_REQUIRED"
    assert count(db, m.Speaker) == 0


def test_consent_needs_a_text_version(make_api):
    api = make_api()
    r = api.client.put("/v1/speakers/caller-1", json={"consent": {"granted": True}}, headers=api.h("enrolment"))
    assert r.status_code == 422 and r.json()["code"] == "CONSENT_REQUIRED"


@pytest.mark.parametrize("speaker_id", ["has space", "x" * 129, "semi;colon", "ümlaut"])
def test_invalid_speaker_id(make_api, speaker_id):
    api = make_api()
    body = {"consent": {"granted": True, "text_version": "v1"}}
    r = api.client.put(f"/v1/speakers/{speaker_id}", json=body, headers=api.h("enrolment"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_SPEAKER_ID"


def test_speaker_id_of_128_chars_is_fine(make_api):
    api = make_api()
    api.put_speaker("a" * 128)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/opt-out"), ("POST", "/enrolment/reset"), ("POST", "/unlock")],
)
def test_unknown_speaker_is_404(make_api, method, suffix):
    api = make_api()
    r = api.client.request(method, f"/v1/speakers/nobody{suffix}", headers=api.h("admin"))
    assert r.status_code == 404
    assert r.json() == {"code": "SPEAKER_NOT_FOUND", "message": "no speaker 'nobody'"}


def test_opt_out_erases_and_blocks_enrolment_until_new_consent(make_api, db):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller-1", unit(1))
    body = engine.register(b"enrol-1", unit(2), net_speech_s=2.0)

    r = api.client.post("/v1/speakers/caller-1/opt-out", headers=api.h("enrolment"))
    assert r.status_code == 200
    assert r.json()["status"] == "OPTED_OUT"
    assert r.json()["consent"]["granted"] is False and r.json()["consent"]["withdrawn_at"]
    with db.transaction() as session:
        speaker = session.query(m.Speaker).one()
        assert speaker.voiceprint is None and speaker.voiceprint_model_version is None

    refused = api.client.post(
        "/v1/speakers/caller-1/enrolment-audio",
        content=body,
        headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "CONSENT_REQUIRED"
    assert count(db, m.EnrolmentEmbedding) == 0

    assert api.verify("caller-1", body)["decision"] == "OPTED_OUT"

    api.put_speaker("caller-1", version="v2")
    got = api.client.get("/v1/speakers/caller-1", headers=api.h("enrolment")).json()
    assert got["status"] == "ENROLLING" and got["consent"]["granted"] is True
    assert got["consent"]["text_version"] == "v2" and got["consent"]["withdrawn_at"] is None
    ok = api.client.post(
        "/v1/speakers/caller-1/enrolment-audio",
        content=body,
        headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
    )
    assert ok.status_code == 200 and ok.json()["net_speech_s"] == 2.0


def test_enrolment_accumulates_until_required_then_reset_starts_over(make_api, db):
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=10.0)
    api.put_speaker("caller-1")
    bodies = [engine.register(f"utt-{i}".encode(), unit(10 + i), net_speech_s=4.0) for i in range(3)]
    statuses = []
    for body in bodies:
        r = api.client.post(
            "/v1/speakers/caller-1/enrolment-audio",
            content=body,
            headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
        )
        assert r.status_code == 200, r.text
        statuses.append((r.json()["status"], r.json()["net_speech_s"], r.json()["required_speech_s"]))
        assert r.json()["quality"]["channel"] == "phone"
    assert statuses == [("ENROLLING", 4.0, 10.0), ("ENROLLING", 8.0, 10.0), ("ENROLLED", 12.0, 10.0)]
    got = api.client.get("/v1/speakers/caller-1", headers=api.h("enrolment")).json()
    assert got["status"] == "ENROLLED" and got["model_version"] == engine.model_version
    assert count(db, m.EnrolmentEmbedding) == 3

    r = api.client.post("/v1/speakers/caller-1/enrolment/reset", headers=api.h("enrolment"))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["net_speech_s"], r.json()["model_version"]) == ("ENROLLING", 0, None)
    assert count(db, m.EnrolmentEmbedding) == 0
    assert api.verify("caller-1", bodies[0])["decision"] == "NOT_ENROLLED"


def test_delete_returns_204_and_speaker_is_gone(make_api, db):
    api = make_api()
    api.seed_voiceprint("caller-1", unit(1))
    r = api.client.delete("/v1/speakers/caller-1", headers=api.h("enrolment"))
    assert r.status_code == 204 and r.content == b""
    assert api.client.get("/v1/speakers/caller-1", headers=api.h("enrolment")).status_code == 404
    assert count(db, m.Speaker) == 0
