"""Where the countermeasure runs on a verification, and what the score log and analysts see of it.

The engine is the product's `Engine` class (so the service defers the CM as it does in production),
with the embedding and the CM score taken from a script: what is tested is the policy, not the models.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from voiceid.antispoof.policy import ChannelThreshold, PadThresholds, save_thresholds
from voiceid.antispoof.stage import PadEvidence
from voiceid.audio.decode import DecodedAudio
from voiceid.audio.quality import QualityReport
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.models.files import MODEL_VERSION
from voiceid.testkit.api import Api
from voiceid.testkit.engines import unit

GENUINE_CM = 3.0
SYNTHETIC_CM = -6.0
VOICE = unit(1)


class DeferringEngine(Engine):
    """An `Engine` whose embedding and CM score come from a script; counts the CM runs."""

    def __init__(self) -> None:  # no front end, no model: nothing of the parent's state is used
        self.probes: dict[bytes, tuple[np.ndarray, float]] = {}
        self.cm_runs = 0
        self.pad = None

    @property
    def model_version(self) -> str:
        return MODEL_VERSION

    @property
    def cm_version(self) -> str | None:
        return "scripted"

    def register(self, body: bytes, vector: np.ndarray, cm_score: float = GENUINE_CM) -> bytes:
        self.probes[body] = (vector, cm_score)
        return body

    def analyse(self, data: bytes, content_type: str | None, defer_cm: bool = False) -> EmbeddedUtterance:
        vector, cm_score = self.probes[data]
        quality = QualityReport(7.0, 6.0, 30.0, 0.0, 8000, "ULAW", "phone")
        if defer_cm:
            evidence = PadEvidence(None, None, "scripted", None)
            audio = DecodedAudio(np.zeros(8000, dtype=np.float32), 8000, "ULAW", 1, 0.0)
            return EmbeddedUtterance(vector.astype(np.float32), MODEL_VERSION, quality, evidence, audio)
        self.cm_runs += 1
        return EmbeddedUtterance(
            vector.astype(np.float32), MODEL_VERSION, quality, PadEvidence(cm_score, cm_score, "scripted", None)
        )

    def with_cm(self, utterance: EmbeddedUtterance) -> EmbeddedUtterance:
        self.cm_runs += 1
        cm_score = next(cm for v, cm in self.probes.values() if np.array_equal(v.astype(np.float32), utterance.vector))
        assert utterance.pad is not None
        return replace(utterance, pad=replace(utterance.pad, cm_raw=cm_score, cm_score=cm_score), cm_audio=None)


@pytest.fixture
def api(make_api, tmp_path) -> tuple[Api, DeferringEngine]:  # type: ignore[no-untyped-def]
    thresholds = tmp_path / "pad_thresholds.json"
    entry = ChannelThreshold(0.0, 0.01, 0.01, 100)
    save_thresholds(PadThresholds("scripted", {"wideband": entry, "phone": entry}), thresholds)
    engine = DeferringEngine()
    built = make_api(
        engine=engine,
        cm_thresholds_file=thresholds,
        replay_enabled=False,
        score_norm="none",
        accept_threshold=0.45,
        reject_threshold=0.30,
    )
    built.put_speaker("cust")
    r = built.client.post(
        "/v1/speakers/cust/enrolment-audio",
        content=engine.register(b"enrol", VOICE),
        headers={**built.h("enrolment"), "Content-Type": "audio/basic"},
    )
    assert r.json()["status"] == "ENROLLED", r.text
    return built, engine


def _log(api: Api, **params: str) -> list[dict]:
    r = api.client.get("/v1/verifications", params=params, headers=api.h("analyst"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_the_cm_is_skipped_exactly_on_reject_and_the_log_says_so(api) -> None:  # type: ignore[no-untyped-def]
    client, engine = api
    runs = engine.cm_runs
    impostor = client.verify("cust", engine.register(b"impostor", unit(9)), "audio/basic")
    assert impostor["decision"] == "REJECT"
    assert engine.cm_runs == runs  # a REJECT on the voice needs no spoof check
    assert (impostor["cm_score"], impostor["cm_check"], impostor["cm_flagged"]) == (None, "SKIPPED", None)
    genuine = client.verify("cust", engine.register(b"genuine", VOICE.copy() * 1.0), "audio/basic")
    assert genuine["decision"] == "ACCEPT" and engine.cm_runs == runs + 1  # a would-be ACCEPT is always scored
    assert (genuine["cm_score"], genuine["cm_threshold"], genuine["cm_check"]) == (GENUINE_CM, 0.0, "PASSED")
    # Between the thresholds (cosine 0.38): INCONCLUSIVE on the voice, which the CM can still turn into
    # REJECT under VOICEID_CM_ACTION=reject (and a challenge into ACCEPT), so it is scored.
    other = unit(11) - float(unit(11) @ VOICE) * VOICE
    between = 0.38 * VOICE + np.sqrt(1 - 0.38**2) * other / np.linalg.norm(other)
    middle = client.verify("cust", engine.register(b"between", between), "audio/basic")
    assert middle["decision"] == "INCONCLUSIVE" and engine.cm_runs == runs + 2
    assert middle["cm_check"] == "PASSED"
    [logged] = [v for v in _log(client) if v["verification_id"] == impostor["verification_id"]]
    assert logged["cm_check"] == "SKIPPED" and logged["cm_score"] is None


def test_a_flagged_call_is_never_accept_and_analysts_can_filter_on_the_flag(api) -> None:  # type: ignore[no-untyped-def]
    client, engine = api
    clone_voice = VOICE + 1e-4 * unit(5)  # the customer's voice, synthesised
    clone = client.verify("cust", engine.register(b"clone", clone_voice, SYNTHETIC_CM), "audio/basic")
    assert clone["decision"] == "INCONCLUSIVE" and "SPOOF_SUSPECTED" in clone["reasons"]
    assert (clone["cm_check"], clone["cm_flagged"], clone["cm_threshold"]) == ("FLAGGED", True, 0.0)
    live_voice = VOICE + 1e-4 * unit(6)
    live = client.verify("cust", engine.register(b"live", live_voice), "audio/basic")
    assert live["decision"] == "ACCEPT" and live["cm_flagged"] is False
    client.verify("cust", engine.register(b"other", unit(9)), "audio/basic")  # REJECT, CM skipped
    assert [v["verification_id"] for v in _log(client, cm_flagged="true")] == [clone["verification_id"]]
    assert [v["verification_id"] for v in _log(client, cm_flagged="false")] == [live["verification_id"]]
    # The attempt page shows the score with its threshold and whether it flagged.
    from tests.fraud.test_review_page import sign_in

    sign_in(client)
    page = client.client.get(f"/review/attempts/{clone['verification_id']}").text
    assert f"{SYNTHETIC_CM:.2f} (log-likelihood ratio" in page and "threshold 0.00" in page
    assert "FLAGGED as synthetic" in page
    listing = client.client.get("/review", params={"cm": "flagged"}).text
    assert clone["verification_id"] in listing and live["verification_id"] not in listing
