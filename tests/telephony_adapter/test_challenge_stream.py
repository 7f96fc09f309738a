"""A Twilio stream answering a spoken challenge: recorded digits that are not the prompt are never
ACCEPT, even when the voice alone would be (real model, real recogniser, μ-law line)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from voiceid.config import Settings
from voiceid.storage.models import Challenge
from voiceid.telephony_adapter.simulator import phone_line, simulate_twilio

pytestmark = [pytest.mark.model, pytest.mark.devdata]


@pytest.fixture(scope="module")
def george(settings: Settings) -> list[tuple[Path, str]]:
    manifest = settings.dev_data_dir / "dev_8k" / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"dev_8k not found at {manifest}; set VOICEID_DEV_DATA_DIR to ../shared/data")
    with manifest.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["speaker_id"] == "fsdd_george"]
    return [(manifest.parent / r["path"], "".join(r["text"].split())) for r in rows]


def test_a_stream_saying_other_digits_is_never_accept(start_server, george) -> None:
    # Thresholds wide open and the countermeasure off: the voice alone is ACCEPT, so only the
    # challenge can stop this call.
    live = start_server(
        accept_threshold=-100.0,
        reject_threshold=-100.0,
        cm_enabled=False,
        replay_enabled=False,
        challenge_policy="off",
    )
    live.enrol("george", phone_line([p for p, _ in george[3:7]]))
    (probe_path, _), (_, other_digits) = george[0], george[1]
    probe = phone_line([probe_path])
    assert live.verify_http("george", probe)["decision"] == "ACCEPT"  # not a vacuous test

    with live.http("ivr") as http:
        r = http.post("/v1/speakers/george/challenges")
        assert r.status_code == 201, r.text
        challenge_id = r.json()["challenge_id"]
    with live.service.db.transaction() as session:
        row = session.get(Challenge, challenge_id)
        assert row is not None
        row.prompt = other_digits  # as if the IVR had asked for the digits of another recording

    result = asyncio.run(
        simulate_twilio(
            live.ws_url, "george", "verify", probe, live.keys["ivr"], speed=8.0, hold_s=2.0, challenge_id=challenge_id
        )
    )
    assert result.decision is not None, result.events
    assert result.decision["decision"] == "REJECT"
    assert "CHALLENGE_MISMATCH" in result.decision["reasons"]
    assert result.decision["challenge"]["status"] == "MISMATCH"
    assert result.outcome is not None and result.outcome["early"] is False  # a challenged call hears it all


def test_a_malformed_challenge_id_closes_the_stream(start_server, george) -> None:
    live = start_server(cm_enabled=False, replay_enabled=False)
    live.enrol("george", phone_line([p for p, _ in george[3:7]]))
    result = asyncio.run(
        simulate_twilio(
            live.ws_url,
            "george",
            "verify",
            phone_line([george[0][0]]),
            live.keys["ivr"],
            speed=8.0,
            challenge_id="not-a-challenge",
        )
    )
    assert result.decision is None
    assert any(e.get("code") == "INVALID_MESSAGE" for e in result.events), result.events
