"""Twilio Media Streams over a real WebSocket on loopback, scored by the real model."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from voiceid.storage.models import EnrolmentEmbedding, Speaker, Verification
from voiceid.telephony_adapter.simulator import simulate_twilio

pytestmark = [pytest.mark.model, pytest.mark.devdata]
SPEED = 8.0  # 8x real time: the protocol and the scoring are the same, the test is shorter


def test_streamed_score_equals_http_mulaw_score(start_server, line, two_speakers):
    # Thresholds wide open: no score can decide early, so the decision is on the whole stream.
    live = start_server(accept_threshold=100.0, reject_threshold=-100.0)
    a, _ = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    probe = line(a, 2, 4.0)
    result = asyncio.run(simulate_twilio(live.ws_url, a, "verify", probe, live.keys["ivr"], speed=SPEED))
    assert result.outcome is not None and result.outcome["event"] == "decision", result.events
    assert result.outcome["early"] is False
    assert result.outcome["audio_s"] == pytest.approx(len(probe) / 8000)
    interims = [e for e in result.events if e["event"] == "interim"]
    assert interims and all(e["streamSid"] == result.outcome["streamSid"] for e in interims)
    # Interims carry progress and a coarse state, never the score (no oracle for hill-climbing).
    assert all("score" not in e and "llr" not in e for e in interims)
    assert any(e.get("state") == "UNDECIDED" for e in interims)
    assert all(0 <= e.get("progress", 0) <= 1 for e in interims)
    streamed = result.decision
    http = live.verify_http(a, probe)
    assert set(streamed) == set(http)  # the same body as the HTTP response
    assert streamed["score"] == pytest.approx(http["score"], abs=1e-3)
    assert streamed["decision"] == http["decision"] == "INCONCLUSIVE"
    assert streamed["net_speech_s"] == pytest.approx(http["net_speech_s"], abs=1e-3)
    assert live.count(Verification) == 2


def test_early_accept_and_reject_before_the_caller_stops(start_server, line, two_speakers):
    live = start_server()
    a, b = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    for speaker, expected in ((a, "ACCEPT"), (b, "REJECT")):
        probe = line(speaker, 6 if speaker == a else 2, 8.0)
        # The line stays open after the file (silence, as a real line does) until the server decides:
        # whatever the machine's speed, the decision must come before the simulated caller's `stop` (40 s of
        # line at 8x real time is 5 s of wall time: room for a loaded CI machine, still far short of a hang-up).
        result = asyncio.run(
            simulate_twilio(live.ws_url, a, "verify", probe, live.keys["ivr"], speed=SPEED, hold_s=40.0)
        )
        assert result.decision is not None, result.events
        assert result.decision["decision"] == expected
        assert result.outcome["early"] is True and result.outcome_before_end is True
        assert result.decision["net_speech_s"] >= live.service.settings.verify_min_speech_s
        assert result.close_code == 1000
    assert live.count(Verification) == 2


def test_enrolment_by_stream_commits_on_clean_stop_only(start_server, line, two_speakers):
    live = start_server()
    a, _ = two_speakers
    live.enrol(a, b"")  # consent only
    audio = line(a, 0, 6.0)
    dropped = asyncio.run(
        simulate_twilio(live.ws_url, a, "enrol", audio, live.keys["enrolment"], speed=SPEED, cut_after_s=4.0)
    )
    assert dropped.outcome is None
    with live.http() as http:
        assert http.get(f"/v1/speakers/{a}").json()["status"] == "ENROLLING"
    assert live.count(EnrolmentEmbedding) == 0

    result = asyncio.run(simulate_twilio(live.ws_url, a, "enrol", audio, live.keys["enrolment"], speed=SPEED))
    assert result.outcome is not None and result.outcome["event"] == "enrolment", result.events
    assert result.outcome["enrolment"]["status"] == "ENROLLED"
    assert any(e["event"] == "interim" and e["net_speech_s"] > 0 for e in result.events)
    assert live.count(EnrolmentEmbedding) == 1
    verified = asyncio.run(simulate_twilio(live.ws_url, a, "verify", line(a, 6, 8.0), live.keys["ivr"], speed=SPEED))
    assert verified.decision is not None and verified.decision["decision"] == "ACCEPT"


def test_hang_up_mid_verification_is_not_a_crash(start_server, line, two_speakers):
    live = start_server(accept_threshold=100.0, reject_threshold=-100.0)
    a, _ = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    dropped = asyncio.run(
        simulate_twilio(live.ws_url, a, "verify", line(a, 2, 4.0), live.keys["ivr"], speed=SPEED, cut_after_s=2.5)
    )
    assert dropped.outcome is None  # nothing is sent on a dropped line ...
    again = asyncio.run(simulate_twilio(live.ws_url, a, "verify", line(a, 2, 3.0), live.keys["ivr"], speed=SPEED))
    assert again.decision is not None


def test_dropped_verify_streams_count_toward_lockout_and_the_rate_limit(start_server, line, two_speakers):
    """Issue 20: streams that reach scored interims and then drop at TCP level are attempts: logged
    (STREAM_ABANDONED, never ACCEPT), weighted toward lockout and counted by the rate limit."""
    live = start_server(
        accept_threshold=100.0, reject_threshold=-100.0, lockout_rejects=1, attempt_rate_limit=2
    )  # every score INCONCLUSIVE (lockout weight 0.5): two dropped calls lock the speaker
    a, b = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    for _ in range(2):
        events: list[dict] = []
        dropped = asyncio.run(
            simulate_twilio(
                live.ws_url,
                a,
                "verify",
                line(b, 2, 5.0),
                live.keys["ivr"],
                speed=SPEED,
                cut_after_s=4.0,
                on_event=events.append,
            )
        )
        assert dropped.outcome is None
        assert any(e["event"] == "interim" and "state" in e for e in events), events  # scored audio
    rows = []
    for _ in range(100):  # the server notices the drop and logs the attempt asynchronously
        with live.service.db.transaction() as session:
            rows = [(r.decision, list(r.reasons)) for r in session.query(Verification).all()]
        if len(rows) == 2:
            break
        time.sleep(0.1)
    assert len(rows) == 2 and all(d == "INCONCLUSIVE" and "STREAM_ABANDONED" in reasons for d, reasons in rows), rows
    with live.service.db.transaction() as session:
        speaker = session.query(Speaker).filter_by(speaker_ref=a).one()
        assert speaker.locked_at is not None  # 2 x 0.5 reached lockout_rejects=1
    # ... and the rate limit saw them: a third call is refused before any audio.
    third = asyncio.run(simulate_twilio(live.ws_url, a, "verify", line(a, 2, 3.0), live.keys["ivr"], speed=SPEED))
    assert third.outcome is not None and third.outcome.get("code") == "RATE_LIMITED", third.outcome


async def _exchange(url: str, *messages: str | bytes) -> tuple[list[dict], int | None]:
    events: list[dict] = []
    async with connect(url) as ws:
        for message in messages:
            await ws.send(message)
        try:
            async for raw in ws:
                events.append(json.loads(raw))
        except ConnectionClosedError:
            pass  # raised for any close code other than 1000/1001; the code is what is checked
    return events, ws.close_code


def _start(key: str, speaker: str = "nobody", mode: str = "verify") -> str:
    params = {"speaker_id": speaker, "mode": mode, "api_key": key}
    return json.dumps({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "customParameters": params}})


def test_malformed_messages_and_refused_keys_get_an_error_event_and_a_close_code(start_server, line, two_speakers):
    live = start_server()
    a, _ = two_speakers
    live.enrol(a, b"")
    media = json.dumps({"event": "media", "media": {"payload": "AAAA"}})
    cases = [
        (("{not json",), "INVALID_MESSAGE", 1007),
        ((json.dumps({"event": "hello"}),), "INVALID_MESSAGE", 1007),
        ((json.dumps({"event": "media"}),), "INVALID_MESSAGE", 1007),
        ((media,), "INVALID_MESSAGE", 1007),  # media before start
        ((b"\x00\x01",), "INVALID_MESSAGE", 1003),
        ((_start("wrong-key", a),), "UNAUTHENTICATED", 1008),
        ((_start(live.keys["analyst"], a),), "FORBIDDEN", 1008),
        ((_start(live.keys["ivr"], a, mode="enrol"),), "FORBIDDEN", 1008),
        ((_start(live.keys["ivr"], "no-such-speaker"),), "SPEAKER_NOT_FOUND", 1008),
        ((json.dumps({"event": "start", "start": {"customParameters": {"speaker_id": a}}}),), "INVALID_MESSAGE", 1008),
        (
            (_start(live.keys["ivr"], a), json.dumps({"event": "media", "media": {"payload": "***"}})),
            "INVALID_MESSAGE",
            1007,
        ),
    ]
    for messages, code, close_code in cases:
        events, closed_with = asyncio.run(_exchange(live.ws_url, *messages))
        assert [e["event"] for e in events][-1] == "error", (messages, events)
        assert events[-1]["code"] == code, (messages, events)
        assert closed_with == close_code, (messages, closed_with)
    # A speaker without a voiceprint is decided at `start`, before any audio is processed.
    events, closed_with = asyncio.run(
        _exchange(live.ws_url, _start(live.keys["ivr"], a), json.dumps({"event": "stop"}))
    )
    assert [e["event"] for e in events] == ["decision"]
    assert events[0]["verification"]["decision"] == "NOT_ENROLLED" and closed_with == 1000
    # The server still serves proper streams after all that.
    live.enrol(a, line(a, 0, 6.0))
    ok = asyncio.run(simulate_twilio(live.ws_url, a, "verify", line(a, 6, 8.0), live.keys["ivr"], speed=SPEED))
    assert ok.decision is not None and ok.decision["decision"] == "ACCEPT"


def test_ten_concurrent_calls(start_server, line, two_speakers):
    # The same recording sent five times is a replay attack by design (REPLAY_SUSPECTED); this test is
    # about concurrency, so replay detection is off here (tests/api/test_antispoof_service.py covers it),
    # and so is the lockout: five impostor REJECTs may land before the genuine calls, in any order.
    live = start_server(replay_enabled=False, lockout_rejects=100)
    a, b = two_speakers
    live.enrol(a, line(a, 0, 6.0))
    probes = [(line(a, 6, 6.0), "ACCEPT") if i % 2 == 0 else (line(b, 2, 6.0), "REJECT") for i in range(10)]

    async def calls():
        return await asyncio.gather(
            *(simulate_twilio(live.ws_url, a, "verify", probe, live.keys["ivr"], speed=4.0) for probe, _ in probes)
        )

    results = asyncio.run(calls())
    sids = set()
    for result, (_, expected) in zip(results, probes, strict=True):
        assert result.decision is not None, result.events
        assert result.decision["decision"] == expected
        assert len({e["streamSid"] for e in result.events}) == 1  # no event crossed into another call
        sids |= {e["streamSid"] for e in result.events}
    assert len(sids) == 10
    assert live.count(Verification) == 10
