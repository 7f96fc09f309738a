"""Presentation-attack checks through the API and the service, on real audio.

The engine here decodes the real audio and fingerprints it exactly as the product does (so replay
detection is real), but takes the speaker vector and the countermeasure score from a script: what is
tested is the wiring (policy, storage, encryption, erasure, retention, the log), not the models
(tests/antispoof covers those)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.antispoof import fingerprint as fp
from voiceid.antispoof.policy import ChannelThreshold, PadThresholds, save_thresholds
from voiceid.antispoof.replay_sim import ReplayChannel, simulate_replay
from voiceid.antispoof.stage import PadEvidence
from voiceid.audio import g711
from voiceid.audio.decode import AudioLimits, decode_audio
from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance
from voiceid.models.files import MODEL_VERSION
from voiceid.storage import models as m
from voiceid.testkit.api import Api, count
from voiceid.testkit.engines import unit

PHONE_LINE = ReplayChannel(rt60_s=0.05, direct_to_reverb_db=20.0, snr_db=30.0)  # a live caller on a handset
GENUINE_CM = 4.0  # scripted calibrated CM score of live speech (above the 0.0 threshold below)
SYNTHETIC_CM = -9.0


@dataclass
class PadScriptedEngine:
    model_version: str = MODEL_VERSION
    cm_version: str | None = None  # like a scripted engine: thresholds are not tied to a model here
    vectors: dict[bytes, tuple[np.ndarray, float]] = field(default_factory=dict)

    def register(self, body: bytes, vector: np.ndarray, cm_score: float = GENUINE_CM) -> bytes:
        self.vectors[body] = (vector, cm_score)
        return body

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        vector, cm_score = self.vectors[data]
        decoded = decode_audio(data, content_type, AudioLimits(max_bytes=1 << 26, max_seconds=600))
        seconds = decoded.duration_s
        channel = "phone" if decoded.is_narrowband else "wideband"
        quality = QualityReport(seconds, seconds * 0.9, 30.0, 0.0, decoded.sample_rate, decoded.codec, channel)
        evidence = PadEvidence(cm_score, cm_score, "scripted", fp.fingerprint(decoded.samples, decoded.sample_rate))
        return EmbeddedUtterance(vector.astype(np.float32), self.model_version, quality, evidence)


def _flac(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="FLAC")
    return buf.getvalue()


@pytest.fixture
def thresholds_file(tmp_path: Path) -> Path:
    path = tmp_path / "pad_thresholds.json"
    entry = ChannelThreshold(0.0, 0.05, 0.05, 100)
    save_thresholds(PadThresholds("scripted", {"wideband": entry, "phone": entry}), path)
    return path


@pytest.fixture
def audio(dev_files: dict[str, list[Path]]) -> dict[str, bytes]:
    """One speaker's enrolment file, a fresh utterance of theirs, and a replay of the enrolment file."""
    speaker = sorted(dev_files)[1]
    enrol, fresh, other = dev_files[speaker][0], dev_files[speaker][1], dev_files[speaker][2]
    wave, rate = sf.read(str(enrol), dtype="float32")
    replayed = simulate_replay(wave, rate, ReplayChannel(rt60_s=0.5, snr_db=15.0), np.random.default_rng(3))
    fresh_wave, fresh_rate = sf.read(str(other), dtype="float32")  # another new utterance, over a phone
    fresh_phone = g711.encode(simulate_replay(fresh_wave, fresh_rate, PHONE_LINE, np.random.default_rng(4)), "ulaw")
    return {
        "enrol": enrol.read_bytes(),
        "fresh": fresh.read_bytes(),
        "fresh_phone": fresh_phone,
        "replay": g711.encode(replayed, "ulaw"),
    }


def _enrol(api: Api, speaker_id: str, body: bytes) -> dict:
    r = api.client.post(
        f"/v1/speakers/{speaker_id}/enrolment-audio",
        content=body,
        headers={**api.h("enrolment"), "Content-Type": "audio/flac"},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _setup(
    make_api, thresholds_file: Path, audio: dict[str, bytes], speaker_id: str = "cust-1", **overrides: object
) -> tuple[Api, PadScriptedEngine]:  # type: ignore[no-untyped-def]
    engine = PadScriptedEngine()
    voice = unit(1 if speaker_id == "cust-1" else 7)  # another person (else held as a duplicate identity)
    for name in ("enrol", "fresh", "fresh_phone", "replay"):
        engine.register(audio[name], voice)
    api = make_api(engine=engine, cm_thresholds_file=thresholds_file, enrol_min_speech_s=4.0, **overrides)
    api.put_speaker(speaker_id)
    assert _enrol(api, speaker_id, audio["enrol"])["status"] == "ENROLLED"
    return api, engine


def test_replay_of_enrolment_is_never_accepted_fresh_calls_are(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, _ = _setup(make_api, thresholds_file, audio)
    fresh = api.verify("cust-1", audio["fresh"], "audio/flac")
    assert fresh["decision"] == "ACCEPT", fresh
    assert fresh["cm_score"] == GENUINE_CM and fresh["replay_score"] < 0.035
    phone = api.verify("cust-1", audio["fresh_phone"], "audio/basic")
    assert phone["decision"] == "ACCEPT", phone
    replay = api.verify("cust-1", audio["replay"], "audio/basic")
    assert replay["decision"] == "INCONCLUSIVE"
    assert "REPLAY_SUSPECTED" in replay["reasons"] and replay["replay_score"] >= 0.035
    # the score log keeps both scores for analysts
    logged = api.client.get(f"/v1/verifications/{replay['verification_id']}", headers=api.h("analyst")).json()
    assert logged["replay_score"] == replay["replay_score"] and logged["cm_score"] == GENUINE_CM
    # ... and the analysts' review page shows them
    from tests.fraud.test_review_page import sign_in

    sign_in(api)
    page = api.client.get(f"/review/attempts/{replay['verification_id']}").text
    assert f"{GENUINE_CM:.2f} (log-likelihood ratio" in page and f"{replay['replay_score']:.3f} (share" in page


def test_a_recording_of_an_earlier_call_replayed_is_caught(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, engine = _setup(make_api, thresholds_file, audio)
    assert api.verify("cust-1", audio["fresh"], "audio/flac")["decision"] == "ACCEPT"
    wave, rate = sf.read(io.BytesIO(audio["fresh"]), dtype="float32")
    recorded = g711.encode(simulate_replay(wave, rate, ReplayChannel(), np.random.default_rng(5)), "alaw")
    engine.register(recorded, unit(1))
    again = api.verify("cust-1", recorded, "audio/x-alaw-basic")
    assert again["decision"] != "ACCEPT" and "REPLAY_SUSPECTED" in again["reasons"]


def _between(voice: np.ndarray, cosine: float = 0.38) -> np.ndarray:
    """A vector at `cosine` to `voice`: between the pinned thresholds (0.30 / 0.45), INCONCLUSIVE."""
    other = unit(99) - (unit(99) @ voice) * voice
    return cosine * voice + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)


def test_a_retry_repeating_its_first_try_is_no_replay_but_audio_heard_before_still_is(  # type: ignore[no-untyped-def]
    make_api, db, thresholds_file, audio, dev_files
) -> None:
    """A retry sends the call so far, so its first try's audio is in it by design: that one fingerprint is
    left out of the replay check, every other one (enrolment, earlier calls) still counts."""
    api, engine = _setup(make_api, thresholds_file, audio)
    voice = unit(1)
    waves = [sf.read(io.BytesIO(audio[name]), dtype="float32") for name in ("fresh", "enrol")]
    later, rate = sf.read(str(dev_files[sorted(dev_files)[1]][3]), dtype="float32")

    def call(body: bytes, vector: np.ndarray, retry_of: str | None = None) -> dict:
        engine.register(body, vector)
        r = api.client.post(
            "/v1/speakers/cust-1/verifications",
            params={} if retry_of is None else {"retry_of": retry_of},
            content=body,
            headers={**api.h("ivr"), "Content-Type": "audio/flac"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    first = call(_flac(waves[0][0][: rate * 3], rate), _between(voice))
    assert first["decision"] == "INCONCLUSIVE" and first["reasons"] == ["SCORE_BETWEEN_THRESHOLDS"]
    so_far = _flac(np.concatenate([waves[0][0][: rate * 3], later]), rate)
    retried = call(so_far, voice, retry_of=first["verification_id"])
    assert retried["decision"] == "ACCEPT", retried
    assert "REPLAY_SUSPECTED" not in retried["reasons"] and retried["retry_of"] == first["verification_id"]
    # the same joined audio as a fresh call (no retry_of) repeats a call already heard: a replay
    engine.register(so_far, voice)
    assert "REPLAY_SUSPECTED" in api.verify("cust-1", so_far, "audio/flac")["reasons"]

    another, _ = sf.read(str(dev_files[sorted(dev_files)[1]][4]), dtype="float32")  # not heard yet
    second = call(_flac(another, rate), _between(voice, 0.36))
    assert second["decision"] == "INCONCLUSIVE" and "REPLAY_SUSPECTED" not in second["reasons"], second
    with_enrolment = _flac(np.concatenate([another, waves[1][0]]), rate)
    replayed = call(with_enrolment, voice, retry_of=second["verification_id"])
    assert replayed["decision"] != "ACCEPT" and "REPLAY_SUSPECTED" in replayed["reasons"], replayed


def test_synthetic_speech_is_never_accepted_and_reject_is_a_setting(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, engine = _setup(make_api, thresholds_file, audio)
    wave, rate = sf.read(io.BytesIO(audio["fresh"]), dtype="float32")
    clone = engine.register(_flac(wave[::-1].copy(), rate), unit(1), cm_score=SYNTHETIC_CM)  # same voice, flagged
    out = api.verify("cust-1", clone, "audio/flac")
    assert out["decision"] == "INCONCLUSIVE" and "SPOOF_SUSPECTED" in out["reasons"]
    assert out["cm_score"] == SYNTHETIC_CM
    key = api.service.settings.encryption_key  # the same database: the same key
    strict, strict_engine = _setup(
        make_api, thresholds_file, audio, "cust-strict", cm_action="reject", encryption_key=key
    )
    strict_engine.register(clone, unit(7), cm_score=SYNTHETIC_CM)
    assert strict.verify("cust-strict", clone, "audio/flac")["decision"] == "REJECT"


def test_replayed_enrolment_audio_is_refused_and_nothing_is_stored(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, _ = _setup(make_api, thresholds_file, audio)
    # a replay of cust-1's own enrolment audio offered as more enrolment is refused
    r = api.client.post(
        "/v1/speakers/cust-1/enrolment-audio",
        content=audio["replay"],
        headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
    )
    assert r.status_code == 422 and r.json()["details"]["reason"] == "REPLAY_SUSPECTED"
    with api.service.db.transaction() as session:
        cust1 = session.query(m.Speaker).filter_by(speaker_ref="cust-1").one().id
    assert count(api.service.db, m.EnrolmentEmbedding, m.EnrolmentEmbedding.speaker_id == cust1) == 1


@pytest.fixture
def session_files(dev_files: dict[str, list[Path]]) -> list[bytes]:
    """Four utterances of one speaker (not the `audio` fixture's), as one enrolment session."""
    speaker = sorted(dev_files)[2]
    return [path.read_bytes() for path in dev_files[speaker][:4]]


def _net(body: bytes) -> float:
    """Net speech the scripted engine reports for a file (0.9 of its duration)."""
    return decode_audio(body, "audio/flac", AudioLimits(max_bytes=1 << 26, max_seconds=600)).duration_s * 0.9


def test_an_enrolment_with_one_doubtful_file_still_completes(make_api, db, thresholds_file, session_files) -> None:  # type: ignore[no-untyped-def]
    """The countermeasure alone never ends an enrolment: a file just below the threshold is kept out
    of the voiceprint while the enrolment is in doubt, the IVR is told why and what to do, and once
    the enrolment's pooled evidence clears it the file counts again and the caller is enrolled."""
    engine = PadScriptedEngine()
    doubtful, genuine = session_files[0], session_files[1]
    engine.register(doubtful, unit(3), cm_score=-1.0)  # flagged (threshold 0.0), but not by much
    engine.register(genuine, unit(3), cm_score=GENUINE_CM)
    # Enough speech only with both files: the doubtful one must count for the enrolment to finish.
    need = _net(doubtful) + _net(genuine) - 0.05
    api = make_api(engine=engine, cm_thresholds_file=thresholds_file, enrol_min_speech_s=need)
    api.put_speaker("caller")
    first = _enrol(api, "caller", doubtful)
    assert first["status"] == "ENROLLING" and first["next_step"] == "SEND_MORE_AUDIO"
    assert first["reasons"] == ["SPOOF_SUSPECTED"]
    cm = first["countermeasure"]
    assert cm["flagged"] and not cm["used"] and cm["enrolment_flagged"] and cm["cm_threshold"] == 0.0
    assert first["net_speech_s"] == 0.0  # kept out of the voiceprint for now
    second = _enrol(api, "caller", genuine)
    assert second["status"] == "ENROLLED" and second["next_step"] == "DONE", second
    assert second["countermeasure"]["enrolment_margin"] == pytest.approx((-1.0 + GENUINE_CM) / 2, abs=1e-3)
    assert second["net_speech_s"] == pytest.approx(_net(doubtful) + _net(genuine), abs=0.01)
    assert api.client.get("/v1/review-queue", headers=api.h("analyst")).json() == []


def test_a_doubtful_enrolment_reaches_the_review_queue(make_api, db, thresholds_file, session_files) -> None:  # type: ignore[no-untyped-def]
    """An enrolment whose files the CM doubts as a whole is not failed: after
    VOICEID_CM_ENROL_MAX_FLAGGED flagged files its voiceprint is built and held for an analyst, who
    releases it (or rejects it, erasing it)."""
    engine = PadScriptedEngine()
    for body in session_files[:2]:
        engine.register(body, unit(4), cm_score=SYNTHETIC_CM)
    api = make_api(engine=engine, cm_thresholds_file=thresholds_file, enrol_min_speech_s=4.0, cm_enrol_max_flagged=2)
    api.put_speaker("doubted")
    first = _enrol(api, "doubted", session_files[0])
    assert (first["status"], first["next_step"]) == ("ENROLLING", "SEND_MORE_AUDIO")
    second = _enrol(api, "doubted", session_files[1])
    assert (second["status"], second["next_step"]) == ("REVIEW_REQUIRED", "WAIT_FOR_REVIEW"), second
    assert "SPOOF_SUSPECTED" in second["reasons"] and second["countermeasure"]["flagged_files"] == 2
    [item] = api.client.get("/v1/review-queue", headers=api.h("analyst")).json()
    assert item["kind"] == "SPOOF_SUSPECTED" and item["speaker_id"] == "doubted"
    assert item["score"] == pytest.approx(SYNTHETIC_CM, abs=1e-3)  # the enrolment's pooled margin
    engine.register(session_files[2], unit(4))
    held = api.verify("doubted", session_files[2], "audio/flac")
    assert (held["decision"], held["reasons"]) == ("NOT_ENROLLED", ["ENROLMENT_UNDER_REVIEW"])
    r = api.client.post(
        f"/v1/review-queue/{item['item_id']}/resolve", json={"action": "approve"}, headers=api.h("analyst")
    )
    assert r.status_code == 200, r.text
    speaker = api.client.get("/v1/speakers/doubted", headers=api.h("enrolment")).json()
    assert speaker["status"] == "ENROLLED"


def test_fingerprints_are_encrypted_erased_with_the_speaker_and_expire(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, _ = _setup(make_api, thresholds_file, audio)
    api.verify("cust-1", audio["fresh"], "audio/flac")
    with api.service.db.transaction() as session:
        speaker = session.query(m.Speaker).filter_by(speaker_ref="cust-1").one()
        rows = session.query(m.VoiceFingerprint).filter_by(speaker_id=speaker.id).all()
        assert sorted(r.kind for r in rows) == ["attempt", "enrolment"]
        plain = fp.fingerprint(*sf.read(io.BytesIO(audio["enrol"]), dtype="float32")).to_bytes()
        enrol_row = next(r for r in rows if r.kind == "enrolment")
        assert plain[:64] not in enrol_row.ciphertext  # stored encrypted
        speaker_id = speaker.id
    mine = m.VoiceFingerprint.speaker_id == speaker_id
    # retention: the attempt's fingerprint goes with its embedding, the enrolment one stays
    api.service.clock = lambda: m.utcnow() + timedelta(days=api.service.settings.attempt_retention_days + 1)
    assert api.service.desk.purge_expired() >= 2  # the attempt embedding and its fingerprint (at least)
    assert count(api.service.db, m.VoiceFingerprint, mine, m.VoiceFingerprint.kind == "attempt") == 0
    assert count(api.service.db, m.VoiceFingerprint, mine, m.VoiceFingerprint.kind == "enrolment") == 1
    # erasure: opting out removes every fingerprint of the speaker
    r = api.client.post("/v1/speakers/cust-1/opt-out", headers=api.h("enrolment"))
    assert r.status_code == 200
    assert count(api.service.db, m.VoiceFingerprint, mine) == 0


def test_deleting_the_speaker_erases_fingerprints(make_api, db, thresholds_file, audio) -> None:  # type: ignore[no-untyped-def]
    api, _ = _setup(make_api, thresholds_file, audio)
    api.verify("cust-1", audio["fresh"], "audio/flac")
    with api.service.db.transaction() as session:
        speaker_id = session.query(m.Speaker).filter_by(speaker_ref="cust-1").one().id
    assert count(api.service.db, m.VoiceFingerprint, m.VoiceFingerprint.speaker_id == speaker_id) == 2
    assert api.client.delete("/v1/speakers/cust-1", headers=api.h("enrolment")).status_code == 204
    assert count(api.service.db, m.VoiceFingerprint, m.VoiceFingerprint.speaker_id == speaker_id) == 0
