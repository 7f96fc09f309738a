"""Spoken challenges through the HTTP API: lifecycle, the decision with a challenge, and the policy.

The voice is scripted (ScriptedEngine: the decision logic without the model); the words are not:
the body is a real recorded digit string (dev_8k) that the real recogniser hears."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.fraud.test_review_page import sign_in
from voiceid.config import Settings
from voiceid.storage.models import Challenge, Verification
from voiceid.testkit.api import Api
from voiceid.testkit.engines import ScriptedEngine, unit

pytestmark = pytest.mark.devdata


@pytest.fixture(scope="module")
def digit_recordings(settings: Settings) -> list[tuple[bytes, str]]:
    """(FLAC bytes, digits) of the first rows of dev_8k, the strings the recogniser test passes."""
    manifest = settings.dev_data_dir / "dev_8k" / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"dev_8k not found at {manifest}; set VOICEID_DEV_DATA_DIR to ../shared/data")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:2]
    return [(Path(manifest.parent / r["path"]).read_bytes(), "".join(r["text"].split())) for r in rows]


def issue(api: Api, speaker_id: str, role: str = "ivr") -> dict:
    r = api.client.post(f"/v1/speakers/{speaker_id}/challenges", headers=api.h(role))
    assert r.status_code == 201, r.text
    return r.json()


def set_prompt(api: Api, challenge_id: str, digits: str) -> None:
    """The prompt is random; tests that need a known one (the recording's own digits, or other
    digits the same voice said) put it in place, as if the IVR had played it."""
    with api.service.db.transaction() as session:
        row = session.get(Challenge, challenge_id)
        assert row is not None
        row.prompt = digits


def verify(api: Api, speaker_id: str, body: bytes, challenge_id: str | None = None) -> dict:
    params = {} if challenge_id is None else {"challenge_id": challenge_id}
    r = api.client.post(
        f"/v1/speakers/{speaker_id}/verifications",
        params=params,
        content=body,
        headers={**api.h("ivr"), "Content-Type": "audio/flac"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def customer(make_api, **overrides: object) -> tuple[Api, ScriptedEngine]:
    engine = ScriptedEngine()
    api = make_api(engine=engine, **overrides)
    api.seed_voiceprint("cust-1", unit(1))
    api.put_speaker("cust-2")
    return api, engine


def test_a_challenge_is_random_bound_short_lived_and_for_ivr_or_admin(make_api) -> None:
    api, _ = customer(make_api, challenge_ttl_s=90.0)
    before = datetime.now(UTC)
    first = issue(api, "cust-1")
    assert first["kind"] == "digits"
    digits = first["prompt"].split()
    assert len(digits) == 6 and all(d.isdigit() and len(d) == 1 for d in digits)
    assert len(first["prompt_text"].split()) == 6
    expires = datetime.fromisoformat(first["expires_at"])
    assert timedelta(seconds=80) < expires - before < timedelta(seconds=100)
    second = issue(api, "cust-1", role="admin")
    assert second["challenge_id"] != first["challenge_id"]  # never reissued
    for role in ("enrolment", "analyst"):
        r = api.client.post("/v1/speakers/cust-1/challenges", headers=api.h(role))
        assert r.status_code == 403, r.text
    r = api.client.post("/v1/speakers/nobody/challenges", headers=api.h("ivr"))
    assert r.status_code == 404 and r.json()["code"] == "SPEAKER_NOT_FOUND"


def test_open_challenges_per_speaker_are_bounded(make_api) -> None:
    api, _ = customer(make_api, challenge_max_open=2)
    issue(api, "cust-1")
    issue(api, "cust-1")
    r = api.client.post("/v1/speakers/cust-1/challenges", headers=api.h("ivr"))
    assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
    issue(api, "cust-2")  # per speaker


def test_own_digits_pass_and_the_same_voice_saying_other_digits_is_never_accept(make_api, digit_recordings) -> None:
    api, engine = customer(make_api)
    (own_body, own_digits), (_, other_digits) = digit_recordings
    engine.register(own_body, unit(1))  # the voice matches the voiceprint: ACCEPT on voice alone

    passed = issue(api, "cust-1")
    set_prompt(api, passed["challenge_id"], own_digits)
    body = verify(api, "cust-1", own_body, passed["challenge_id"])
    assert body["decision"] == "ACCEPT", body
    assert "CHALLENGE_PASSED" in body["reasons"]
    assert body["challenge"]["status"] == "PASSED" and body["challenge"]["confidence"] is not None

    # A recording of the customer saying other digits: the replay the challenge exists for.
    replay = issue(api, "cust-1")
    set_prompt(api, replay["challenge_id"], other_digits)
    body = verify(api, "cust-1", own_body, replay["challenge_id"])
    assert body["decision"] == "REJECT", body
    assert "CHALLENGE_MISMATCH" in body["reasons"] and body["challenge"]["status"] == "MISMATCH"

    # The score log keeps prompt and heard for the analyst.
    r = api.client.get(f"/v1/verifications/{body['verification_id']}", headers=api.h("analyst"))
    record = r.json()
    assert record["challenge_prompt"] == other_digits and record["challenge_id"] == replay["challenge_id"]
    assert record["challenge"]["heard"] == body["challenge"]["heard"]
    exported = api.client.get("/v1/verifications.csv", headers=api.h("analyst")).text
    assert f"MISMATCH,{other_digits}," in exported
    # ...and the review desk's attempt page shows them side by side.
    assert sign_in(api).status_code == 303
    page = api.client.get(f"/review/attempts/{body['verification_id']}").text
    assert f'id="challenge-prompt">{other_digits}<' in page
    heard = body["challenge"]["heard"] or "\u2013"  # an en dash when nothing was heard
    assert f'id="challenge-heard">{heard}<' in page
    assert "CHALLENGE_MISMATCH" in page


def test_single_use_expiry_and_another_speakers_challenge(make_api, digit_recordings) -> None:
    api, engine = customer(make_api, challenge_ttl_s=60.0)
    (own_body, own_digits), _ = digit_recordings
    engine.register(own_body, unit(1))
    api.seed_voiceprint("cust-2", unit(1))  # same scripted voice: only the challenge decides

    used = issue(api, "cust-1")
    set_prompt(api, used["challenge_id"], own_digits)
    assert verify(api, "cust-1", own_body, used["challenge_id"])["decision"] == "ACCEPT"
    again = verify(api, "cust-1", own_body, used["challenge_id"])
    assert again["decision"] != "ACCEPT" and "CHALLENGE_USED" in again["reasons"]

    theirs = issue(api, "cust-1")
    set_prompt(api, theirs["challenge_id"], own_digits)
    other = verify(api, "cust-2", own_body, theirs["challenge_id"])
    assert other["decision"] != "ACCEPT" and "CHALLENGE_UNKNOWN" in other["reasons"]
    # ...and it stays usable by its own speaker.
    assert verify(api, "cust-1", own_body, theirs["challenge_id"])["decision"] == "ACCEPT"

    late = issue(api, "cust-1")
    set_prompt(api, late["challenge_id"], own_digits)
    real_clock = api.service.clock
    api.service.clock = lambda: real_clock() + timedelta(seconds=61)
    expired = verify(api, "cust-1", own_body, late["challenge_id"])
    assert expired["decision"] != "ACCEPT" and "CHALLENGE_EXPIRED" in expired["reasons"]


def test_bad_challenge_ids(make_api, digit_recordings) -> None:
    api, engine = customer(make_api)
    (own_body, _), _ = digit_recordings
    engine.register(own_body, unit(1))
    for bad in ("xyz", "0" * 31, "G" * 32, "' OR 1=1 --"):
        r = api.client.post(
            "/v1/speakers/cust-1/verifications",
            params={"challenge_id": bad},
            content=own_body,
            headers={**api.h("ivr"), "Content-Type": "audio/flac"},
        )
        assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST", r.text
    with api.service.db.transaction() as session:
        assert session.scalars(select(Verification)).first() is None  # nothing logged
    unknown = verify(api, "cust-1", own_body, "0" * 32)
    assert unknown["decision"] != "ACCEPT" and "CHALLENGE_UNKNOWN" in unknown["reasons"]


def test_failed_challenges_count_toward_lockout_with_their_weight(make_api, digit_recordings) -> None:
    api, engine = customer(make_api, challenge_lockout_weight=2.5, lockout_rejects=5)
    (own_body, _), (_, other_digits) = digit_recordings
    engine.register(own_body, unit(1))
    for _ in range(2):
        c = issue(api, "cust-1")
        set_prompt(api, c["challenge_id"], other_digits)
        assert verify(api, "cust-1", own_body, c["challenge_id"])["decision"] == "REJECT"
    assert verify(api, "cust-1", own_body)["decision"] == "LOCKED"


def test_policy_always_asks_every_call(make_api, digit_recordings) -> None:
    (own_body, _), _ = digit_recordings
    api, engine = customer(make_api, challenge_policy="always")
    engine.register(own_body, unit(1))
    body = verify(api, "cust-1", own_body)
    assert body["decision"] == "INCONCLUSIVE" and "CHALLENGE_REQUIRED" in body["reasons"]
    assert body["challenge"] is None


def test_policy_off_never_asks(make_api, digit_recordings) -> None:
    (own_body, _), _ = digit_recordings
    api, engine = customer(make_api, challenge_policy="off")
    engine.register(own_body, unit(1))
    assert verify(api, "cust-1", own_body)["decision"] == "ACCEPT"


def test_an_audiosocket_call_binds_a_challenge(make_api) -> None:
    api, _ = customer(make_api)
    challenge = issue(api, "cust-1")
    call = str(uuid.uuid4())
    body = {"speaker_id": "cust-1", "mode": "verify", "challenge_id": challenge["challenge_id"]}
    r = api.client.put(f"/v1/calls/{call}", json=body, headers=api.h("ivr"))
    assert r.status_code == 201, r.text
    assert r.json()["challenge_id"] == challenge["challenge_id"]
    r = api.client.put(f"/v1/calls/{call}", json={**body, "challenge_id": "nope"}, headers=api.h("ivr"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"
