"""Issue 10, finding 7 (consent) replayed, and the retention of unused voiceprints.

"granted": "yes" or 1 was taken as consent, and re-consent after an opt-out overwrote the record of
the withdrawal. Now only the JSON literal true is consent and every event is kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from voiceid.storage import models as m
from voiceid.storage.keys import speaker_owner
from voiceid.testkit.api import count
from voiceid.testkit.engines import ScriptedEngine, unit
from voiceid.worker.jobs import expire_voiceprints


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("granted", ["yes", 1, "true", 1.0, "on", [True], {"value": True}])
def test_only_the_literal_true_is_consent(make_api, db, granted):
    api = make_api()
    name = fresh("lenient")
    r = api.client.put(
        f"/v1/speakers/{name}",
        json={"consent": {"granted": granted, "text_version": "v1"}},
        headers=api.h("enrolment"),
    )
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST", r.text
    assert count(db, m.Speaker, m.Speaker.speaker_ref == name) == 0
    assert count(db, m.ConsentEvent, m.ConsentEvent.speaker_ref == name) == 0


def test_reconsent_after_opt_out_appends_to_the_ledger(make_api):
    api = make_api()
    name = fresh("ledger")
    keys = {k["role"]: k["key_id"] for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json()}
    api.put_speaker(name, version="v1")
    api.put_speaker(name, version="v1")  # the same consent again: nothing new to record
    assert api.client.post(f"/v1/speakers/{name}/opt-out", headers=api.h("enrolment")).status_code == 200
    r = api.client.put(
        f"/v1/speakers/{name}",
        json={"consent": {"granted": True, "text_version": "v2", "channel": "web"}},
        headers=api.h("enrolment"),
    )
    assert r.status_code == 200 and r.json()["status"] == "ENROLLING"
    assert api.client.delete(f"/v1/speakers/{name}", headers=api.h("enrolment")).status_code == 204

    ledger = api.client.get(f"/v1/speakers/{name}/consents", headers=api.h("analyst"))
    assert ledger.status_code == 200, ledger.text
    events = ledger.json()
    assert [(e["action"], e["text_version"], e["channel"]) for e in events] == [
        ("GRANTED", "v1", "phone"),
        ("WITHDRAWN", None, None),
        ("GRANTED", "v2", "web"),
        ("ERASED", None, None),
    ]
    assert {e["api_key_id"] for e in events} == {keys["enrolment"]}
    stamps = [e["recorded_at"] for e in events]
    assert stamps == sorted(stamps)
    assert api.client.get(f"/v1/speakers/{name}/consents", headers=api.h("ivr")).status_code == 403
    unknown = api.client.get(f"/v1/speakers/{fresh('never')}/consents", headers=api.h("analyst"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "SPEAKER_NOT_FOUND"


def test_unused_voiceprints_expire_and_used_ones_stay(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0, voiceprint_retention_days=1095)
    idle, busy = fresh("idle"), fresh("busy")
    start = datetime.now(UTC)
    clock = [start]
    api.service.clock = lambda: clock[0]
    for name, seed in ((idle, 11), (busy, 12)):
        api.put_speaker(name)
        for i in range(2):
            body = engine.register(f"{name}-e{i}".encode(), unit(seed), net_speech_s=3.0)
            r = api.client.post(
                f"/v1/speakers/{name}/enrolment-audio",
                content=body,
                headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
            )
            assert r.status_code == 200, r.text
        assert r.json()["status"] == "ENROLLED"
    with api.service.db.transaction() as session:
        idle_id = session.scalars(select(m.Speaker.id).where(m.Speaker.speaker_ref == idle)).one()

    clock[0] = start + timedelta(days=1000)  # busy calls in; idle does not
    assert api.verify(busy, engine.register(b"busy-call", unit(12)), "audio/basic")["decision"] == "ACCEPT"
    clock[0] = start + timedelta(days=1094)
    assert expire_voiceprints(api.service.ctx) == 0
    clock[0] = start + timedelta(days=1096)
    assert expire_voiceprints(api.service.ctx) == 1
    assert expire_voiceprints(api.service.ctx) == 0  # idempotent

    got = api.client.get(f"/v1/speakers/{idle}", headers=api.h("enrolment")).json()
    assert got["status"] == "EXPIRED" and got["net_speech_s"] == 0 and got["consent"]["granted"] is True
    decision = api.verify(idle, engine.register(b"idle-call", unit(11)), "audio/basic")
    assert (decision["decision"], decision["reasons"]) == ("NOT_ENROLLED", ["VOICEPRINT_EXPIRED"])
    assert api.service.cipher.store.get_by_owner(speaker_owner(idle_id)) is None  # crypto-shredded
    assert api.client.get(f"/v1/speakers/{busy}", headers=api.h("enrolment")).json()["status"] == "ENROLLED"
    trail = api.client.get("/v1/audit?action=SPEAKER_EXPIRED", headers=api.h("admin")).json()["items"]
    assert trail[0]["target"] == idle and trail[0]["actor"] == "retention"

    # Re-enrolment brings the speaker back.
    for i in range(2):
        body = engine.register(f"{idle}-again{i}".encode(), unit(11), net_speech_s=3.0)
        r = api.client.post(
            f"/v1/speakers/{idle}/enrolment-audio",
            content=body,
            headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
        )
    assert r.json()["status"] == "ENROLLED"
    assert api.verify(idle, engine.register(b"idle-back", unit(11)), "audio/basic")["decision"] == "ACCEPT"
