"""The fraud desk on one calibrated scale: pooled and idempotent watchlist voices, channel-aware
scoring, duplicates across channels, linked calls and multi-identity alerts, one review item per
cause, items closed on erasure. Real API, scripted embeddings (the logic is under test, not the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr

from tests.fraud.conftest import llr_at
from tests.fraud.test_watchlist import FRAUDSTER, VICTIM, enrol, flag, near, queue
from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance
from voiceid.fraud.duplicates import find_duplicates
from voiceid.fraud.index import VectorIndex
from voiceid.fraud.scale import (
    ChannelScale,
    PairScale,
    load_fraud_scale,
    pair_channel,
    scale_from_calibrations,
)
from voiceid.storage import models as m
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import count
from voiceid.testkit.engines import ScriptedEngine, unit

# --- the scale (pure) -------------------------------------------------------------------------


def test_pair_scale_is_the_channel_pair():
    assert pair_channel("phone", "phone") == PairScale.PHONE
    assert pair_channel("wideband", "wideband") == PairScale.WIDEBAND
    assert pair_channel("wideband", "phone") == pair_channel("phone", "wideband") == PairScale.CROSS
    # Rows stored before channels were recorded count as phone.
    assert pair_channel(None, "phone") == PairScale.PHONE
    assert pair_channel(None, "wideband") == PairScale.CROSS


def test_shipped_scale_maps_cosine_to_the_channel_calibration():
    scale = load_fraud_scale()
    for pair in PairScale:
        s = scale.scales[pair]
        assert s.slope > 0
        assert s.llr(s.cosine_at(3.0)) == pytest.approx(3.0)
    # Same cosine, different evidence: one person's two wideband recordings agree more than their
    # phone calls do, so a given cosine is stronger evidence on the phone than on wideband...
    assert scale.llr(0.6, "phone", "phone") > 0
    # ...and cross-channel pairs score lower still for the same voice, so 0.5 means more there.
    assert scale.llr(0.5, "wideband", "phone") > scale.llr(0.5, "phone", "phone")
    assert scale.llrs([0.6, 0.6], "phone", ["phone", "wideband"]) == pytest.approx(
        [scale.llr(0.6, "phone", "phone"), scale.llr(0.6, "phone", "wideband")]
    )


def test_scale_needs_a_raw_calibration_per_channel():
    cross = ChannelScale(20.0, -8.0)
    entries: list[dict[str, object]] = [{"channel": "phone", "norm": "none", "slope": 30.0, "offset": -16.0}]
    with pytest.raises(ValueError, match="wideband"):
        scale_from_calibrations(entries, cross)
    entries.append({"channel": "wideband", "norm": "as-norm", "slope": 3.0, "offset": -7.0})  # not raw cosine
    with pytest.raises(ValueError, match="wideband"):
        scale_from_calibrations(entries, cross)
    entries.append({"channel": "wideband", "norm": "none", "slope": 36.0, "offset": -17.0})
    scale = scale_from_calibrations(entries, cross)
    assert float(scale.llr(0.5, "wideband", "wideband")) == pytest.approx(1.0)
    assert float(scale.llr(0.5, "phone", "wideband")) == pytest.approx(2.0)


def test_cross_channel_duplicate_found_on_the_cross_scale_only():
    """One person enrolled from wideband and from the phone: their voiceprints' cosine is lower
    than a same-channel pair's. On the phone scale it would pass as two people; the cross scale
    holds it."""
    scale = load_fraud_scale()
    threshold = 6.0
    cosine = (
        scale.scales[PairScale.CROSS].cosine_at(threshold) + scale.scales[PairScale.PHONE].cosine_at(threshold)
    ) / 2
    assert scale.scales[PairScale.PHONE].llr(cosine) < threshold <= scale.scales[PairScale.CROSS].llr(cosine)
    index = VectorIndex(192)
    index.add(["app-user"], VICTIM[None, :])
    new = near(VICTIM, cosine, 3)
    refs = {"app-user": "alice-app"}
    found = find_duplicates(new, "phone", index, refs, {"app-user": "wideband"}, scale, threshold)
    assert [(d.speaker_ref, d.channel) for d in found] == [("alice-app", "wideband")]
    assert found[0].llr == pytest.approx(float(scale.llr(cosine, "phone", "wideband")), abs=0.01)
    # The same geometry between two phone voiceprints is below the bar.
    assert find_duplicates(new, "phone", index, refs, {"app-user": "phone"}, scale, threshold) == []


# --- an engine whose bodies say which channel they came through ----------------------------------


@dataclass
class ChannelEngine(ScriptedEngine):
    channels: dict[bytes, str] = field(default_factory=dict)

    def register_on(self, body: bytes, vector: np.ndarray, channel: str) -> bytes:
        self.channels[body] = channel
        return self.register(body, vector)

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        got = super().analyse(data, content_type)
        channel = self.channels.get(data, "phone")
        q = got.quality
        quality = QualityReport(
            q.duration_s,
            q.net_speech_s,
            q.snr_db,
            q.clipping_ratio,
            16000 if channel == "wideband" else 8000,
            "PCM_16" if channel == "wideband" else "ULAW",
            channel,
        )
        return EmbeddedUtterance(got.vector, got.model_version, quality)


def test_same_person_enrolled_from_wideband_and_phone_is_held(make_api):
    engine = ChannelEngine()
    scale = load_fraud_scale()
    threshold = 6.0
    cosine = (
        scale.scales[PairScale.CROSS].cosine_at(threshold) + scale.scales[PairScale.PHONE].cosine_at(threshold)
    ) / 2
    api = make_api(engine=engine, duplicate_llr_threshold=threshold, enrol_min_speech_s=4.0)
    r = enrol(api, "alice-app", engine.register_on(b"alice-app", VICTIM, "wideband"))
    assert r.json()["status"] == "ENROLLED", r.text
    r = enrol(api, "alice-phone", engine.register_on(b"alice-phone", near(VICTIM, cosine, 5), "phone"))
    assert (r.json()["status"], r.json()["reasons"]) == ("REVIEW_REQUIRED", ["DUPLICATE_IDENTITY"]), r.text
    [item] = queue(api)
    assert (item["speaker_id"], item["matched_ref"]) == ("alice-phone", "alice-app")
    assert item["details"]["channel"] == "phone"
    assert item["details"]["matches"][0]["channel"] == "wideband"
    assert item["score"] >= threshold


# --- pooled, idempotent watchlist voices -------------------------------------------------------


def fraud_call(api, engine, body: bytes, seed: int, claimed: str = "mule", cosine: float = 0.8) -> dict:
    return api.verify(claimed, engine.register(body, near(FRAUDSTER, cosine, seed)), "audio/basic")


def test_flagging_the_same_attempt_twice_changes_nothing(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5))
    api.seed_voiceprint("mule", FRAUDSTER)
    call = fraud_call(api, engine, b"c1", 100)
    first = flag(api, call["verification_id"])
    again = api.client.post(
        "/v1/watchlist", json={"verification_id": call["verification_id"], "label": "other"}, headers=api.h("analyst")
    )
    assert again.status_code == 200, again.text
    assert (again.json()["entry_id"], again.json()["samples"]) == (first["entry_id"], 1)
    assert count(api.service.db, m.WatchlistEntry) == 1 and count(api.service.db, m.WatchlistSample) == 1
    later = fraud_call(api, engine, b"c2", 101)
    assert [h["entry_id"] for h in later["watchlist_hits"]] == [first["entry_id"]]  # listed once


def test_several_flagged_calls_pool_into_one_voice_that_catches_what_each_missed(make_api):
    """Calls at cosine 0.8 to the fraudster's voice are 0.58-0.63 to one another: one flagged call
    misses the next call at a bar of cosine 0.68, three pooled (0.92 to the voice) catch it (0.70)."""
    engine = ScriptedEngine()
    threshold = llr_at(0.68)
    api = make_api(engine=engine, watchlist_llr_threshold=threshold)
    api.seed_voiceprint("mule", FRAUDSTER)
    calls = [fraud_call(api, engine, f"flagged-{i}".encode(), 110 + i) for i in range(3)]
    entry = flag(api, calls[0]["verification_id"], label="Ring A")
    probe = engine.register(b"next", near(FRAUDSTER, 0.8, 120))
    api.seed_voiceprint("victim", VICTIM)
    assert api.verify("victim", probe, "audio/basic")["watchlist_hits"] == []
    for call in calls[1:]:
        pooled = flag(api, call["verification_id"], label="ring a")  # same voice, label matched case-insensitively
        assert pooled["entry_id"] == entry["entry_id"]
    assert pooled["samples"] == 3 and pooled["channel"] == "phone"
    [hit] = api.verify("victim", probe, "audio/basic")["watchlist_hits"]
    assert hit["entry_id"] == entry["entry_id"] and hit["llr"] >= threshold and hit["scale"] == "phone"
    assert [e["samples"] for e in api.client.get("/v1/watchlist", headers=api.h("analyst")).json()] == [3]


def test_a_wideband_call_starts_its_own_entry_and_is_screened_on_its_channel(make_api):
    engine = ChannelEngine()
    api = make_api(engine=engine, watchlist_llr_threshold=llr_at(0.5))
    api.seed_voiceprint("mule", FRAUDSTER)
    phone = api.verify("mule", engine.register_on(b"p", near(FRAUDSTER, 0.9, 130), "phone"), "audio/basic")
    app = api.verify("mule", engine.register_on(b"w", near(FRAUDSTER, 0.9, 131), "wideband"), "audio/basic")
    e1 = flag(api, phone["verification_id"], label="ring")
    e2 = flag(api, app["verification_id"], label="ring")
    assert e1["entry_id"] != e2["entry_id"] and (e1["channel"], e2["channel"]) == ("phone", "wideband")
    wrong = api.client.post(
        "/v1/watchlist",
        json={"verification_id": app["verification_id"], "label": "ring", "entry_id": e1["entry_id"]},
        headers=api.h("analyst"),
    )
    assert wrong.status_code == 200  # already flagged: idempotent, whatever the entry asked for
    hits = fraud_call(api, engine, b"next-phone", 132)["watchlist_hits"]
    assert {h["entry_id"]: h["scale"] for h in hits} == {e1["entry_id"]: "phone", e2["entry_id"]: "cross"}


# --- linked calls and alerts ---------------------------------------------------------------------


def linked(api, verification_id: str, role: str = "analyst"):
    return api.client.get(f"/v1/verifications/{verification_id}/linked", headers=api.h(role))


def test_one_voice_on_three_identities_raises_one_alert_and_links_the_calls(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, link_llr_threshold=llr_at(0.7), link_alert_identities=3, link_alert_days=7)
    for i, customer in enumerate(("cust-1", "cust-2", "cust-3", "cust-4")):
        api.seed_voiceprint(customer, unit(200 + i))
    genuine = api.verify("cust-1", engine.register(b"genuine", near(unit(200), 0.9, 209)), "audio/basic")
    calls = [
        fraud_call(api, engine, f"attack-{i}".encode(), 210 + i, claimed=c, cosine=0.95)
        for i, c in enumerate(("cust-1", "cust-2", "cust-3"))
    ]
    assert "LINKED_VOICE" not in calls[1]["reasons"]  # two identities: below the bar
    assert calls[2]["reasons"][-1] == "LINKED_VOICE"
    [item] = queue(api)
    assert (item["kind"], item["speaker_id"], item["matched_ref"]) == (
        "LINKED_VOICE",
        "cust-3",
        calls[2]["verification_id"],
    )
    assert item["details"]["identities"] == ["cust-3", "cust-1", "cust-2"]
    assert sorted(item["details"]["verification_ids"]) == sorted(c["verification_id"] for c in calls)
    # A fourth identity joins the same alert: one review item per voice cluster.
    fourth = fraud_call(api, engine, b"attack-3", 213, claimed="cust-4", cosine=0.95)
    assert "LINKED_VOICE" in fourth["reasons"]
    [item] = queue(api)
    assert sorted(item["details"]["identities"]) == ["cust-1", "cust-2", "cust-3", "cust-4"]

    r = linked(api, calls[0]["verification_id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identities"] == ["cust-1", "cust-2", "cust-3", "cust-4"] and body["alert"] is True
    assert sorted(link["verification_id"] for link in body["links"]) == sorted(
        c["verification_id"] for c in [*calls[1:], fourth]
    )
    assert all(link["llr"] >= llr_at(0.7) and link["scale"] == "phone" for link in body["links"])
    assert genuine["verification_id"] not in {link["verification_id"] for link in body["links"]}
    # The genuine caller's own call links to nobody.
    assert linked(api, genuine["verification_id"]).json()["links"] == []


def test_calls_outside_the_window_do_not_alert(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, link_llr_threshold=llr_at(0.7), link_alert_identities=3, link_alert_days=2)
    for customer in ("cust-1", "cust-2", "cust-3"):
        api.seed_voiceprint(customer, unit(hash(customer) % 1000))
    t0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    got = []
    for day, customer in ((0, "cust-1"), (5, "cust-2"), (10, "cust-3")):
        api.service.clock = lambda day=day: t0 + timedelta(days=day)
        got.append(fraud_call(api, engine, customer.encode(), 300 + day, claimed=customer, cosine=0.95))
    assert all("LINKED_VOICE" not in g["reasons"] for g in got)
    assert queue(api) == []
    body = linked(api, got[2]["verification_id"]).json()
    assert body["identities"] == ["cust-3", "cust-1", "cust-2"]  # linked over the whole retention...
    assert body["identities_in_window"] == ["cust-3"] and body["alert"] is False  # ...but not within days


def test_linked_calls_endpoint_errors_and_roles(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.put_speaker("enrolling")
    unscored = api.verify("enrolling", b"never decoded")
    assert (linked(api, "nope").status_code, linked(api, "nope").json()["code"]) == (404, "VERIFICATION_NOT_FOUND")
    r = linked(api, unscored["verification_id"])
    assert (r.status_code, r.json()["code"]) == (409, "EMBEDDING_NOT_AVAILABLE")
    for role in ("ivr", "enrolment"):
        assert linked(api, unscored["verification_id"], role).status_code == 403


# --- review items: one per cause, closed on erasure ----------------------------------------------


def test_more_enrolment_audio_does_not_queue_a_second_duplicate_item(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6))
    api.seed_voiceprint("alice", VICTIM)
    enrol(api, "alice-2", engine.register(b"a1", near(VICTIM, 0.85, 400)))
    r = api.client.post(
        "/v1/speakers/alice-2/enrolment-audio",
        content=engine.register(b"a2", near(VICTIM, 0.9, 401)),
        headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
    )
    assert r.json()["reasons"] == ["DUPLICATE_IDENTITY"]
    [item] = queue(api)
    assert item["matched_ref"] == "alice"


@pytest.mark.parametrize("erase", ["delete", "opt-out", "enrolment/reset"])
def test_items_of_an_erased_speaker_are_closed_and_cannot_be_approved(make_api, erase):
    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6))
    api.seed_voiceprint("alice", VICTIM)
    enrol(api, "alice-2", engine.register(b"a1", near(VICTIM, 0.85, 410)))
    [item] = queue(api)
    if erase == "delete":
        r = api.client.delete("/v1/speakers/alice-2", headers=api.h("enrolment"))
    else:
        r = api.client.post(f"/v1/speakers/alice-2/{erase}", headers=api.h("enrolment"))
    assert r.status_code in (200, 204), r.text
    assert queue(api) == []
    [closed] = queue(api, "CLOSED")
    assert (closed["item_id"], closed["resolved_by"]) == (item["item_id"], "erasure")
    r = api.client.post(
        f"/v1/review-queue/{item['item_id']}/resolve", json={"action": "approve"}, headers=api.h("analyst")
    )
    assert (r.status_code, r.json()["code"]) == (409, "CONFLICT")


def test_second_pass_on_the_pooled_voice_finds_a_call_the_first_missed(make_api):
    """Calls at cosine 0.8 to one voice: the last call links to two of the earlier ones at a bar of
    0.6 (0.62, 0.63) but not the third (0.58); pooled with the two it finds it (0.73 >= 0.7)."""
    engine = ScriptedEngine()
    key = SecretStr(generate_key_text())
    api = make_api(
        engine=engine,
        encryption_key=key,
        link_llr_threshold=llr_at(0.6),
        link_pooled_llr_threshold=llr_at(0.7),
        link_alert_identities=10,
    )
    customers = ("cust-1", "cust-2", "cust-3", "cust-4")
    for i, customer in enumerate(customers):
        api.seed_voiceprint(customer, unit(700 + i))
    earlier = [fraud_call(api, engine, f"e{i}".encode(), 110 + i, claimed=customers[i]) for i in range(3)]
    last = fraud_call(api, engine, b"last", 120, claimed="cust-4")
    body = linked(api, last["verification_id"]).json()
    by_call = {link["verification_id"]: link for link in body["links"]}
    assert set(by_call) == {e["verification_id"] for e in earlier}
    assert [by_call[e["verification_id"]]["pooled"] for e in earlier] == [False, False, True]
    assert body["identities"] == ["cust-4", "cust-1", "cust-2", "cust-3"]
    # Without the second pass the third call is not linked.
    plain = make_api(engine=engine, encryption_key=key, link_llr_threshold=llr_at(0.6), link_pooled_llr_threshold=None)
    ids = {link["verification_id"] for link in linked(plain, last["verification_id"]).json()["links"]}
    assert ids == {earlier[0]["verification_id"], earlier[1]["verification_id"]}


def test_an_unreadable_retained_attempt_does_not_fail_verifications(make_api):
    """Attempts written under another key cannot be decrypted; linking skips them instead of
    turning every later verification into a 500."""
    engine = ScriptedEngine()
    old = make_api(engine=engine)
    old.seed_voiceprint("cust-1", unit(800))
    fraud_call(old, engine, b"old-key", 801, claimed="cust-1", cosine=0.95)
    new = make_api(engine=engine)  # another encryption key, same database
    new.seed_voiceprint("cust-2", unit(802))
    got = fraud_call(new, engine, b"new-key", 803, claimed="cust-2", cosine=0.95)
    assert got["decision"] in ("ACCEPT", "REJECT", "INCONCLUSIVE")
    assert linked(new, got["verification_id"]).json()["links"] == []
    again = fraud_call(new, engine, b"new-key-2", 804, claimed="cust-2", cosine=0.95)
    assert again["verification_id"] != got["verification_id"]
