"""Voiceprints that follow the caller (issue 19, item 3; services/adaptation.py) through the API: only
high-confidence accepted calls that passed the countermeasure adapt, never the decision of the call
itself; a flagged or analyst-reverted call is taken out and the voiceprint equals the rebuild without it;
every adaptation and reversion is audited; erasure and retention remove the kept calls."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from tests.api.test_cm_policy import DeferringEngine
from tests.fraud.test_review_page import sign_in
from voiceid.antispoof.policy import ChannelThreshold, PadThresholds, save_thresholds
from voiceid.audio.quality import QualityReport
from voiceid.enrolment.adaptation import adapted_voiceprint
from voiceid.errors import VoiceIdError
from voiceid.services import audit
from voiceid.services.adaptation import Adaptation, limits_from
from voiceid.services.retention import purge_attempts
from voiceid.services.score_log import parse_filter
from voiceid.storage import models as m
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import Api
from voiceid.testkit.calibrations import synthetic_calibration
from voiceid.testkit.engines import unit
from voiceid.verify.calibration import save_calibrations
from voiceid.verify.vectors import l2_normalise
from voiceid.worker.jobs import sweep_alerted_adaptation

DIM = 192
VOICE = unit(1)


def toward(anchor: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at cosine `cos` from `anchor`."""
    other = unit(seed)
    other = l2_normalise(other - float(other @ anchor) * anchor)
    return l2_normalise(cos * anchor + np.sqrt(1 - cos**2) * other)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A raw-cosine phone calibration (impostors near 0.1, genuine callers near 0.75) and CM thresholds."""
    cal = synthetic_calibration(np.random.default_rng(0), (0.75, 0.08), (0.10, 0.08))
    save_calibrations([cal], tmp_path / "calibration.json")
    entry = ChannelThreshold(0.0, 0.01, 0.01, 100)
    save_thresholds(PadThresholds("scripted", {"wideband": entry, "phone": entry}), tmp_path / "pad.json")
    return {"calibration": tmp_path / "calibration.json", "pad": tmp_path / "pad.json"}


def make(make_api, files: dict[str, Path], **overrides: object) -> tuple[Api, DeferringEngine]:  # type: ignore[no-untyped-def]
    engine = DeferringEngine()
    values: dict[str, object] = {
        "pin_thresholds": False,
        "calibration_file": files["calibration"],
        "cm_thresholds_file": files["pad"],
        "score_norm": "none",
        "enrol_phone_view": False,
        "self_calibration": False,
        "replay_enabled": False,
        "enrol_min_speech_s": 4.0,
        "lockout_rejects": 1000,
        "adaptation": True,
        "adaptation_min_cosine": 0.5,
    }
    values.update(overrides)
    return make_api(engine=engine, **values), engine


def enrol(api: Api, engine: DeferringEngine, voice: np.ndarray = VOICE) -> str:
    speaker = f"cust-{uuid.uuid4().hex[:8]}"
    api.put_speaker(speaker)
    r = api.client.post(
        f"/v1/speakers/{speaker}/enrolment-audio",
        content=engine.register(f"{speaker}-enrol".encode(), voice),
        headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
    )
    assert r.json()["status"] == "ENROLLED", r.text
    return speaker


def call(api: Api, engine: DeferringEngine, speaker: str, vector: np.ndarray, cm: float = 3.0) -> dict:
    body = engine.register(f"{speaker}-{uuid.uuid4().hex}".encode(), vector, cm)
    return api.verify(speaker, body, "audio/basic")


def speaker_row(api: Api, speaker: str) -> m.Speaker:
    with api.service.db.transaction() as session:
        row = repo.get_speaker(session, speaker)
        assert row is not None
        session.expunge(row)
        return row


def phone_print(api: Api, speaker: str) -> np.ndarray:
    """The voiceprint the next phone call of `speaker` is scored against."""
    got = repo.voiceprint_for_channel(api.service.cipher, speaker_row(api, speaker), "phone", False, adapted=True)
    assert got is not None
    return got


def kept(api: Api, speaker: str) -> int:
    with api.service.db.transaction() as session:
        sp = repo.get_speaker(session, speaker)
        speaker_id = sp.id if sp is not None else ""
        return int(
            session.scalar(
                select(func.count()).select_from(m.AdaptationCall).where(m.AdaptationCall.speaker_id == speaker_id)
            )
            or 0
        )


def audits(api: Api, speaker: str, action: str) -> list[m.AuditEvent]:
    with api.service.db.transaction() as session:
        rows = session.scalars(
            select(m.AuditEvent).where(m.AuditEvent.action == action, m.AuditEvent.target == speaker)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def logged(api: Api, verification_id: str) -> dict:
    r = api.client.get(f"/v1/verifications/{verification_id}", headers=api.h("analyst"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_confident_call_adapts_later_calls_not_its_own_decision(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files)
    speaker = enrol(api, engine)
    first = toward(VOICE, 0.85, 10)
    got = call(api, engine, speaker, first)
    assert got["decision"] == "ACCEPT" and got["cm_check"] == "PASSED"
    assert got["llr"] >= got["accept_threshold"] + api.service.settings.adaptation_llr_margin
    # decided on the enrolment voiceprint; it adapts only what later calls meet
    assert got["raw_score"] == pytest.approx(float(first @ VOICE), abs=1e-4)
    assert got["adaptation"] == "ADAPTED" and logged(api, got["verification_id"])["adaptation"] == "ADAPTED"
    limits = limits_from(api.service.settings)
    expected = adapted_voiceprint(VOICE, [first], limits)
    np.testing.assert_allclose(phone_print(api, speaker), expected, atol=1e-5)
    second = l2_normalise(first + 0.3 * unit(11))  # the caller on the same line again
    again = call(api, engine, speaker, second)
    assert again["raw_score"] == pytest.approx(float(second @ expected), abs=1e-4)
    assert again["raw_score"] > float(second @ VOICE) + 0.01  # the voiceprint followed the caller
    (entry, _) = audits(api, speaker, "VOICEPRINT_ADAPTED")
    assert entry.details["verification_id"] == got["verification_id"] and entry.details["channel"] == "phone"
    # the enrolment voiceprint itself never changes
    stored = repo.get_voiceprint(api.service.cipher, speaker_row(api, speaker))
    np.testing.assert_allclose(stored, VOICE, atol=1e-6)


def test_only_high_confidence_countermeasure_passed_calls_adapt(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, adaptation_min_cosine=0.0)
    speaker = enrol(api, engine)
    margin = api.service.settings.adaptation_llr_margin
    seen = {"narrow": 0, "confident": 0}
    for i, cos in enumerate(np.linspace(0.3, 0.9, 25)):
        got = call(api, engine, speaker, toward(VOICE, float(cos), 100 + i))
        if got["decision"] != "ACCEPT":
            assert got["adaptation"] is None
            continue
        confident = got["llr"] >= got["accept_threshold"] + margin
        seen["confident" if confident else "narrow"] += 1
        assert (got["adaptation"] == "ADAPTED") == confident, got
    assert seen["narrow"] > 0 and seen["confident"] > 0  # both kinds of ACCEPT were met
    # a spoof: never ACCEPT, never adapts
    spoof = call(api, engine, speaker, toward(VOICE, 0.9, 200), cm=-6.0)
    assert spoof["cm_check"] == "FLAGGED" and spoof["adaptation"] is None


def test_without_the_countermeasure_nothing_adapts(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, cm_enabled=False)
    speaker = enrol(api, engine)
    got = call(api, engine, speaker, toward(VOICE, 0.9, 10))
    assert got["decision"] == "ACCEPT" and got["cm_check"] is None and got["adaptation"] is None
    assert kept(api, speaker) == 0


def test_the_setting_off_neither_adapts_nor_scores_adapted_voiceprints(make_api, files) -> None:  # type: ignore[no-untyped-def]
    key = SecretStr(generate_key_text())  # the second service reads what the first wrote
    api, engine = make(make_api, files, encryption_key=key)
    speaker = enrol(api, engine)
    assert call(api, engine, speaker, toward(VOICE, 0.85, 10))["adaptation"] == "ADAPTED"
    off, engine_off = make(make_api, files, adaptation=False, encryption_key=key)
    probe = toward(VOICE, 0.8, 11)
    got = call(off, engine_off, speaker, probe)
    assert got["adaptation"] is None and got["raw_score"] == pytest.approx(float(probe @ VOICE), abs=1e-4)
    assert kept(off, speaker) == 1


def test_a_flagged_call_is_taken_out_and_the_voiceprint_rebuilt_without_it(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files)
    speaker = enrol(api, engine)
    probes = [toward(VOICE, 0.85, 10 + i) for i in range(3)]
    ids = [call(api, engine, speaker, p)["verification_id"] for p in probes]
    assert [logged(api, v)["adaptation"] for v in ids] == ["ADAPTED"] * 3
    limits = limits_from(api.service.settings)
    np.testing.assert_allclose(phone_print(api, speaker), adapted_voiceprint(VOICE, probes, limits), atol=1e-5)

    # the fraud desk flags the second call: it leaves the voiceprint
    r_flag = api.client.post(
        "/v1/watchlist", json={"verification_id": ids[1], "label": "fraud"}, headers=api.h("analyst")
    )
    assert r_flag.status_code == 201, r_flag.text
    assert logged(api, ids[1])["adaptation"] == "REVERTED"
    without = adapted_voiceprint(VOICE, [probes[0], probes[2]], limits)
    np.testing.assert_allclose(phone_print(api, speaker), without, atol=1e-5)
    (flagged,) = audits(api, speaker, "ADAPTATION_REVERTED")
    assert flagged.details["verification_ids"] == [ids[1]] and flagged.details["why"] == "flagged"

    # an analyst takes the first one out
    r = api.client.post(f"/v1/verifications/{ids[0]}/unadapt", headers=api.h("analyst"))
    assert r.status_code == 200, r.text
    assert r.json() == {"verification_ids": [ids[0]], "speakers": [speaker]}
    np.testing.assert_allclose(phone_print(api, speaker), adapted_voiceprint(VOICE, [probes[2]], limits), atol=1e-5)
    again = api.client.post(f"/v1/verifications/{ids[0]}/unadapt", headers=api.h("analyst"))
    assert again.json()["verification_ids"] == []  # nothing left to take out
    assert api.client.post("/v1/verifications/nope/unadapt", headers=api.h("analyst")).status_code == 404
    assert api.client.post(f"/v1/verifications/{ids[2]}/unadapt", headers=api.h("ivr")).status_code == 403

    # and the rest of the speaker's calls: the enrolment voiceprint again
    r = api.client.post(f"/v1/speakers/{speaker}/adaptation/revert", headers=api.h("analyst"))
    assert r.status_code == 200 and r.json()["verification_ids"] == [ids[2]]
    np.testing.assert_allclose(phone_print(api, speaker), VOICE, atol=1e-6)
    assert speaker_row(api, speaker).adapted_phone_voiceprint is None and kept(api, speaker) == 0
    assert len(audits(api, speaker, "ADAPTATION_REVERTED")) == 3
    with api.service.db.transaction() as session:
        assert audit.verify(session).ok  # the entries are links of the hash chain
    # the session's database outlives this test's key store: leave no watchlist entry behind
    entry_id = r_flag.json()["entry_id"]
    assert api.client.delete(f"/v1/watchlist/{entry_id}", headers=api.h("analyst")).status_code == 204


def linked_voice_item(api: Api, verification_id: str) -> m.ReviewItem:
    """The linked-voice review item a call raised."""
    with api.service.db.transaction() as session:
        row = session.scalars(
            select(m.ReviewItem).where(m.ReviewItem.kind == "LINKED_VOICE", m.ReviewItem.matched_ref == verification_id)
        ).one()
        session.expunge(row)
        return row


def test_a_call_later_part_of_a_linked_voice_alert_is_taken_out(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, link_alert_identities=2)
    speaker, other = enrol(api, engine), enrol(api, engine, unit(2))
    first = toward(VOICE, 0.85, 10)
    # as close to the enrolment voiceprint, far from the first call (cosine 0.45): never linked to it
    second = l2_normalise(2 * 0.85 * VOICE - first)
    ids = [call(api, engine, speaker, p)["verification_id"] for p in (first, second)]
    assert [logged(api, v)["adaptation"] for v in ids] == ["ADAPTED"] * 2
    limits = limits_from(api.service.settings)

    # the second call's voice is heard on another identity: a linked-voice alert holding it
    fraud = call(api, engine, other, second)
    item = linked_voice_item(api, fraud["verification_id"])
    assert item.details["verification_ids"] == sorted([ids[1], fraud["verification_id"]])
    assert [logged(api, v)["adaptation"] for v in ids] == ["ADAPTED", "REVERTED"]
    np.testing.assert_allclose(phone_print(api, speaker), adapted_voiceprint(VOICE, [first], limits), atol=1e-5)
    (entry,) = audits(api, speaker, "ADAPTATION_REVERTED")
    assert entry.details == {
        "verification_ids": [ids[1]],
        "why": "linked_voice_alert",
        "review_item_id": item.id,
        "kept_calls": {"phone": 1},
    }
    # another call of that voice joins the same alert: nothing is left to take out, nothing more audited
    call(api, engine, other, second)
    assert len(audits(api, speaker, "ADAPTATION_REVERTED")) == 1 and kept(api, speaker) == 1
    with api.service.db.transaction() as session:
        assert audit.verify(session).ok


def _resolve(api: Api, item_id: str, action: str) -> None:
    r = api.client.post(f"/v1/review-queue/{item_id}/resolve", json={"action": action}, headers=api.h("analyst"))
    assert r.status_code == 200, r.text


def test_dismissing_a_linked_voice_alert_puts_its_calls_back_confirming_it_does_not(  # type: ignore[no-untyped-def]
    make_api, files
) -> None:
    api, engine = make(make_api, files, link_alert_identities=2)
    speaker, other = enrol(api, engine), enrol(api, engine, unit(2))
    first = toward(VOICE, 0.85, 10)
    second = l2_normalise(2 * 0.85 * VOICE - first)
    ids = [call(api, engine, speaker, p)["verification_id"] for p in (first, second)]
    adapted_both = phone_print(api, speaker)
    limits = limits_from(api.service.settings)

    fraud = call(api, engine, other, second)  # the alert takes the second call out
    item = linked_voice_item(api, fraud["verification_id"])
    assert [logged(api, v)["adaptation"] for v in ids] == ["ADAPTED", "REVERTED"]
    _resolve(api, item.id, "approve")  # "Dismiss (not fraud)"
    assert [logged(api, v)["adaptation"] for v in ids] == ["ADAPTED", "ADAPTED"] and kept(api, speaker) == 2
    np.testing.assert_allclose(phone_print(api, speaker), adapted_both, atol=1e-5)
    restored = [e for e in audits(api, speaker, "VOICEPRINT_ADAPTED") if e.details.get("restored_after")]
    assert [(e.details["verification_id"], e.details["restored_after"]) for e in restored] == [(ids[1], item.id)]
    with api.service.db.transaction() as session:
        assert audit.verify(session).ok

    # the same voice on the other identity again, now confirmed as fraud: the call stays out
    fraud2 = call(api, engine, other, second)
    item2 = linked_voice_item(api, fraud2["verification_id"])
    assert logged(api, ids[1])["adaptation"] == "REVERTED"
    _resolve(api, item2.id, "reject")
    assert logged(api, ids[1])["adaptation"] == "REVERTED" and kept(api, speaker) == 1
    np.testing.assert_allclose(phone_print(api, speaker), adapted_voiceprint(VOICE, [first], limits), atol=1e-5)


def test_a_dismissed_alert_leaves_out_a_call_an_analyst_took_out(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, link_alert_identities=2)
    speaker, other = enrol(api, engine), enrol(api, engine, unit(2))
    probe = toward(VOICE, 0.85, 10)
    adapted = call(api, engine, speaker, probe)["verification_id"]
    r = api.client.post(f"/v1/verifications/{adapted}/unadapt", headers=api.h("analyst"))
    assert r.status_code == 200, r.text
    fraud = call(api, engine, other, probe)  # nothing left for the alert to take out
    item = linked_voice_item(api, fraud["verification_id"])
    _resolve(api, item.id, "approve")
    assert logged(api, adapted)["adaptation"] == "REVERTED" and kept(api, speaker) == 0


def test_a_failed_revert_keeps_the_decision_and_the_worker_sweep_takes_the_call_out(  # type: ignore[no-untyped-def]
    make_api, files, monkeypatch
) -> None:
    api, engine = make(make_api, files, link_alert_identities=2)
    speaker, other = enrol(api, engine), enrol(api, engine, unit(2))
    probe = toward(VOICE, 0.85, 10)
    adapted = call(api, engine, speaker, probe)["verification_id"]
    assert logged(api, adapted)["adaptation"] == "ADAPTED"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(Adaptation, "revert_flagged", broken)
        fraud = call(api, engine, other, probe)  # raises the alert; the revert fails
    assert fraud["decision"] in {"ACCEPT", "INCONCLUSIVE", "REJECT"}  # a decision, not an error
    assert logged(api, adapted)["adaptation"] == "ADAPTED" and kept(api, speaker) == 1

    item = linked_voice_item(api, fraud["verification_id"])
    assert sweep_alerted_adaptation(api.service.ctx) == 1
    assert logged(api, adapted)["adaptation"] == "REVERTED" and kept(api, speaker) == 0
    (entry,) = audits(api, speaker, "ADAPTATION_REVERTED")
    assert entry.details["why"] == "linked_voice_alert" and entry.details["review_item_id"] == item.id
    assert sweep_alerted_adaptation(api.service.ctx) == 0  # idempotent
    assert len(audits(api, speaker, "ADAPTATION_REVERTED")) == 1


def test_an_alert_on_calls_that_adapted_nothing_changes_no_voiceprint(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, link_alert_identities=2)
    speaker = enrol(api, engine)
    first = toward(VOICE, 0.85, 10)
    got = call(api, engine, speaker, first)
    assert got["adaptation"] == "ADAPTED"
    before = phone_print(api, speaker)
    # one voice, unlike the first call's, on two other identities
    ring = unit(50)
    b, c = enrol(api, engine, unit(2)), enrol(api, engine, unit(3))
    call(api, engine, b, ring)
    raised = call(api, engine, c, ring)
    assert linked_voice_item(api, raised["verification_id"]).status == "OPEN"
    assert logged(api, got["verification_id"])["adaptation"] == "ADAPTED" and kept(api, speaker) == 1
    np.testing.assert_allclose(phone_print(api, speaker), before, atol=1e-6)
    assert audits(api, speaker, "ADAPTATION_REVERTED") == []


def test_analysts_see_and_filter_the_calls_that_adapted(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files)
    speaker = enrol(api, engine)
    adapted, reverted = (call(api, engine, speaker, toward(VOICE, 0.85, 10 + i))["verification_id"] for i in range(2))
    assert api.client.post(f"/v1/verifications/{reverted}/unadapt", headers=api.h("analyst")).status_code == 200
    other = call(api, engine, speaker, toward(VOICE, 0.2, 12))["verification_id"]  # REJECT: adapts nothing

    def listed(**params: str) -> list[str]:
        r = api.client.get("/v1/verifications", params={"speaker_id": speaker, **params}, headers=api.h("analyst"))
        assert r.status_code == 200, r.text
        return sorted(v["verification_id"] for v in r.json()["items"])

    assert listed(adapted="true") == sorted([adapted, reverted]) and listed(adapted="false") == [other]
    assert listed(adaptation="ADAPTED") == [adapted] and listed(adaptation="REVERTED", adapted="yes") == [reverted]
    for bad, words in (({"adapted": "maybe"}, "must be true or false"), ({"adaptation": "NONE"}, "must be one of")):
        r = api.client.get("/v1/verifications", params=bad, headers=api.h("analyst"))
        assert r.status_code == 422 and words in r.json()["message"], r.text
    assert parse_filter({"adapted": "False"}).adapted is False
    with pytest.raises(VoiceIdError, match="disagree"):
        parse_filter({"adaptation": "ADAPTED", "adapted": "false"})
    r = api.client.get("/v1/verifications.csv", params={"speaker_id": speaker}, headers=api.h("analyst"))
    by_id = {row["verification_id"]: row["adaptation"] for row in csv.DictReader(io.StringIO(r.text))}
    assert by_id == {adapted: "ADAPTED", reverted: "REVERTED", other: ""}
    r = api.client.get(
        "/v1/verifications.csv", params={"adaptation": "REVERTED", "speaker_id": speaker}, headers=api.h("analyst")
    )
    assert [row["verification_id"] for row in csv.DictReader(io.StringIO(r.text))] == [reverted]
    with api.service.db.transaction() as session:
        assert audit.verify(session).ok  # the export's audit entry holds the filter

    # the review desk: the list's column and filter, the attempt page, the export
    assert sign_in(api).status_code == 303
    page = api.client.get("/review", params={"speaker_id": speaker, "adaptation": "REVERTED"}).text
    assert f"/review/attempts/{reverted}" in page and f"/review/attempts/{adapted}" not in page
    assert '<td class="adaptation">REVERTED</td>' in page and 'value="REVERTED" selected' in page
    page = api.client.get("/review", params={"speaker_id": speaker, "adapted": "false"}).text
    assert f"/review/attempts/{other}" in page and f"/review/attempts/{adapted}" not in page
    assert '<input type="hidden" name="adapted" value="false">' in page  # kept by the form's Filter button
    assert 'id="adaptation">ADAPTED: this call adapted' in api.client.get(f"/review/attempts/{adapted}").text
    assert 'id="adaptation">none<' in api.client.get(f"/review/attempts/{other}").text
    export = api.client.get("/review/export.csv", params={"speaker_id": speaker, "adapted": "true"}).text
    by_id = {row["verification_id"]: row["adaptation"] for row in csv.DictReader(io.StringIO(export))}
    assert by_id == {adapted: "ADAPTED", reverted: "REVERTED"}


def test_the_count_cap_keeps_the_newest_calls(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, adaptation_max_calls=2)
    speaker = enrol(api, engine)
    probes = [toward(VOICE, 0.85, 10 + i) for i in range(4)]
    for p in probes:
        assert call(api, engine, speaker, p)["adaptation"] == "ADAPTED"
    assert kept(api, speaker) == 2
    limits = limits_from(api.service.settings)
    np.testing.assert_allclose(phone_print(api, speaker), adapted_voiceprint(VOICE, probes[2:], limits), atol=1e-5)


def test_a_call_far_from_the_enrolment_voiceprint_never_adapts(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, adaptation_min_cosine=0.9)
    speaker = enrol(api, engine)
    got = call(api, engine, speaker, toward(VOICE, 0.85, 10))
    assert got["decision"] == "ACCEPT" and got["adaptation"] is None and kept(api, speaker) == 0


@pytest.mark.parametrize("erasure", ["delete", "opt-out", "reset"])
def test_erasure_removes_the_kept_calls(make_api, files, erasure: str) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files)
    speaker = enrol(api, engine)
    assert call(api, engine, speaker, toward(VOICE, 0.85, 10))["adaptation"] == "ADAPTED"
    with api.service.db.transaction() as session:
        speaker_id = session.scalars(select(m.Speaker.id).where(m.Speaker.speaker_ref == speaker)).one()
    assert kept(api, speaker) == 1
    if erasure == "delete":
        r = api.client.delete(f"/v1/speakers/{speaker}", headers=api.h("enrolment"))
    else:
        path = {"opt-out": "opt-out", "reset": "enrolment/reset"}[erasure]
        r = api.client.post(f"/v1/speakers/{speaker}/{path}", headers=api.h("enrolment"))
    assert r.status_code in (200, 204), r.text
    with api.service.db.transaction() as session:
        left = session.scalar(
            select(func.count()).select_from(m.AdaptationCall).where(m.AdaptationCall.speaker_id == speaker_id)
        )
        assert left == 0
        row = session.get(m.Speaker, speaker_id)
        assert row is None or (row.adapted_phone_voiceprint is None and row.adapted_voiceprint is None)


def test_kept_calls_expire_with_the_attempt_embeddings(make_api, files) -> None:  # type: ignore[no-untyped-def]
    api, engine = make(make_api, files, attempt_retention_days=30.0)
    speaker = enrol(api, engine)
    got = call(api, engine, speaker, toward(VOICE, 0.85, 10))
    assert got["adaptation"] == "ADAPTED"
    now = api.service.clock()
    api.service.clock = lambda: now + timedelta(days=29)
    purge_attempts(api.service.ctx)
    assert kept(api, speaker) == 1
    api.service.clock = lambda: now + timedelta(days=31)
    purge_attempts(api.service.ctx)
    assert kept(api, speaker) == 0
    np.testing.assert_allclose(phone_print(api, speaker), VOICE, atol=1e-6)
    assert logged(api, got["verification_id"])["adaptation"] == "REVERTED"
    (entry,) = audits(api, speaker, "ADAPTATION_REVERTED")
    assert entry.details["why"] == "retention" and entry.actor == "retention"


class WidebandEnrolmentEngine(DeferringEngine):
    """Bodies starting with b"wb" arrive over a wideband line; the others over the phone."""

    def analyse(self, data: bytes, content_type: str | None, defer_cm: bool = False):  # type: ignore[no-untyped-def]
        got = super().analyse(data, content_type, defer_cm)
        if not data.startswith(b"wb"):
            return got
        return replace(got, quality=QualityReport(7.0, 6.0, 30.0, 0.0, 16000, "PCM_16", "wideband"))


def test_a_phone_call_never_adapts_a_wideband_voiceprint(make_api, files) -> None:  # type: ignore[no-untyped-def]
    """With the phone view off, a phone call meets the wideband voiceprint: adapting it towards the phone
    channel would move it away from its cohort (bench/adaptation.py: impostor ACCEPT doubled)."""
    engine = WidebandEnrolmentEngine()
    api = make_api(
        engine=engine,
        pin_thresholds=False,
        calibration_file=files["calibration"],
        cm_thresholds_file=files["pad"],
        score_norm="none",
        enrol_phone_view=False,
        self_calibration=False,
        replay_enabled=False,
        enrol_min_speech_s=4.0,
        adaptation=True,
        adaptation_min_cosine=0.5,
    )
    speaker = f"app-{uuid.uuid4().hex[:8]}"
    api.put_speaker(speaker)
    r = api.client.post(
        f"/v1/speakers/{speaker}/enrolment-audio",
        content=engine.register(f"wb-{speaker}".encode(), VOICE),
        headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
    )
    assert r.json()["status"] == "ENROLLED", r.text
    got = call(api, engine, speaker, toward(VOICE, 0.9, 10))
    assert got["channel"] == "phone" and got["decision"] == "ACCEPT" and got["cm_check"] == "PASSED"
    assert got["adaptation"] is None and kept(api, speaker) == 0
