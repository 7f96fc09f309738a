"""The one voice retry of an INCONCLUSIVE call (`?retry_of=`, services/retries.py): decided at the
stricter retry threshold, only after an INCONCLUSIVE for lack of evidence, once, within the window,
and a refused retry changes nothing stored."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voiceid.models.files import MODEL_VERSION
from voiceid.services.retries import why_not_retryable
from voiceid.storage import models as m
from voiceid.testkit.api import Api, count
from voiceid.testkit.calibrations import synthetic_calibration
from voiceid.testkit.engines import ScriptedEngine
from voiceid.verify.calibration import Calibration, load_calibrations, save_calibrations
from voiceid.verify.decision import Thresholds
from voiceid.verify.policy import DecisionPolicy, Scale, retry_pair, stricter

DIM = 192
SPEECH_S = 6.0


@pytest.fixture
def calibration_file(tmp_path: Path) -> Path:
    """A raw-cosine phone calibration (what a deployment under 100 callers decides with), its classes
    overlapping enough for an INCONCLUSIVE band."""
    cal = synthetic_calibration(np.random.default_rng(0), (0.50, 0.12), (0.10, 0.10))
    path = tmp_path / "calibration.json"
    save_calibrations([cal], path)
    return path


class Caller:
    """One enrolled caller with an exact voiceprint, and probes at a chosen cosine to it."""

    def __init__(self, api: Api, engine: ScriptedEngine, speaker_id: str, seed: int) -> None:
        self.api, self.engine, self.speaker_id = api, engine, speaker_id
        self.rng = np.random.default_rng(seed)
        voice = self.rng.standard_normal(DIM)
        self.voice = voice / np.linalg.norm(voice)
        api.seed_voiceprint(speaker_id, self.voice)
        self.sent = 0

    def probe(self, cosine: float) -> bytes:
        other = self.rng.standard_normal(DIM)
        other -= other @ self.voice * self.voice
        other /= np.linalg.norm(other)
        vector = (cosine * self.voice + math.sqrt(1 - cosine**2) * other).astype(np.float32)
        self.sent += 1
        return self.engine.register(f"{self.speaker_id}-{self.sent}".encode(), vector, SPEECH_S)

    def call(self, cosine: float, retry_of: str | None = None, speaker_id: str | None = None) -> Any:
        return self.api.client.post(
            f"/v1/speakers/{speaker_id or self.speaker_id}/verifications",
            params={} if retry_of is None else {"retry_of": retry_of},
            content=self.probe(cosine),
            headers={**self.api.h("ivr"), "Content-Type": "audio/wav"},
        )


def cosine_with_llr(cal: Calibration, low: float, high: float) -> float:
    """A cosine whose LLR (at SPEECH_S of speech) lies in [low, high)."""
    grid = np.linspace(-0.2, 0.99, 5000)
    llr = cal.llrs(grid, np.full_like(grid, SPEECH_S))
    inside = grid[(llr >= low) & (llr < high)]
    assert inside.size, (low, high)
    return float(inside[inside.size // 2])


@pytest.fixture
def setup(make_api, calibration_file: Path) -> tuple[Api, ScriptedEngine, Calibration, Thresholds, Thresholds]:
    engine = ScriptedEngine()
    # Adaptation off: an ACCEPT would move the voiceprint the next probes are placed against.
    api = make_api(engine=engine, pin_thresholds=False, calibration_file=calibration_file, adaptation=False)
    cal = load_calibrations(calibration_file)[0]
    policy = api.service.verifications.policy
    first = policy.thresholds("phone", cal.calibration_id).thresholds
    retry = policy.thresholds("phone", cal.calibration_id, retry=True).thresholds
    return api, engine, cal, first, retry


def test_a_retry_is_decided_at_the_stricter_threshold_and_says_what_it_retried(setup) -> None:
    api, engine, cal, first, retry = setup
    assert retry.accept > first.accept and retry.reject == first.reject
    caller = Caller(api, engine, "caller-1", 1)
    between = cosine_with_llr(cal, first.reject + 0.2, first.accept - 0.2)
    accept_first_only = cosine_with_llr(cal, first.accept + 0.05, retry.accept - 0.05)
    accept_both = cosine_with_llr(cal, retry.accept + 0.3, retry.accept + 3.0)

    inconclusive = caller.call(between).json()
    assert inconclusive["decision"] == "INCONCLUSIVE"
    assert inconclusive["reasons"] == ["SCORE_BETWEEN_THRESHOLDS"]
    assert inconclusive["accept_threshold"] == first.accept and inconclusive["retry_of"] is None

    # The same evidence that a first try accepts is not enough for a retry.
    assert caller.call(accept_first_only).json()["decision"] == "ACCEPT"
    strict = caller.call(accept_first_only, retry_of=inconclusive["verification_id"]).json()
    assert strict["decision"] == "INCONCLUSIVE", strict
    assert strict["accept_threshold"] == retry.accept
    assert strict["retry_of"] == inconclusive["verification_id"]

    second = caller.call(between).json()
    accepted = caller.call(accept_both, retry_of=second["verification_id"]).json()
    assert accepted["decision"] == "ACCEPT" and accepted["accept_threshold"] == retry.accept
    logged = api.client.get(f"/v1/verifications/{accepted['verification_id']}", headers=api.h("analyst")).json()
    assert logged["retry_of"] == second["verification_id"]
    # the score log CSV and the analysts' attempt page say which call it retried
    rows = csv.DictReader(io.StringIO(api.client.get("/v1/verifications.csv", headers=api.h("analyst")).text))
    assert {r["verification_id"]: r["retry_of"] for r in rows}[accepted["verification_id"]] == second["verification_id"]
    from tests.fraud.test_review_page import sign_in

    sign_in(api)
    page = api.client.get(f"/review/attempts/{accepted['verification_id']}").text
    assert f'href="/review/attempts/{second["verification_id"]}"' in page and "stricter retry threshold" in page


def _refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_a_retry_is_refused_unless_it_follows_an_evidence_inconclusive_once_within_the_window(setup) -> None:
    api, engine, cal, first, _ = setup
    caller = Caller(api, engine, "caller-1", 1)
    other = Caller(api, engine, "caller-2", 2)
    between = cosine_with_llr(cal, first.reject + 0.2, first.accept - 0.2)
    high = cosine_with_llr(cal, first.accept + 3.0, first.accept + 6.0)

    accepted = caller.call(high).json()
    inconclusive = caller.call(between).json()
    old = caller.call(between).json()
    with api.service.db.transaction() as session:
        row = session.get(m.Verification, old["verification_id"])
        assert row is not None
        row.created_at -= timedelta(seconds=api.service.settings.retry_window_s + 1)
    logged = count(api.service.db, m.Verification)

    _refused(caller.call(high, retry_of=accepted["verification_id"]), 409, "RETRY_NOT_ALLOWED")
    _refused(caller.call(high, retry_of=old["verification_id"]), 409, "RETRY_NOT_ALLOWED")
    # another speaker's verification id is nobody's business: not found
    _refused(other.call(high, retry_of=inconclusive["verification_id"]), 404, "VERIFICATION_NOT_FOUND")
    _refused(caller.call(high, retry_of="0" * 32), 404, "VERIFICATION_NOT_FOUND")
    _refused(caller.call(high, retry_of="not-an-id"), 422, "INVALID_REQUEST")
    assert count(api.service.db, m.Verification) == logged, "a refused retry logs nothing"

    retried = caller.call(between, retry_of=inconclusive["verification_id"]).json()
    assert retried["decision"] == "INCONCLUSIVE" and retried["retry_of"] == inconclusive["verification_id"]
    # once: a verification is retried at most once, and a retry is not retried again
    _refused(caller.call(high, retry_of=inconclusive["verification_id"]), 409, "RETRY_NOT_ALLOWED")
    again = caller.call(high, retry_of=retried["verification_id"])
    _refused(again, 409, "RETRY_NOT_ALLOWED")
    assert "itself a retry" in again.json()["message"]
    assert count(api.service.db, m.Verification) == logged + 1


def test_a_refused_retry_counts_nothing_toward_the_lockout(setup) -> None:
    api, engine, cal, first, _ = setup
    caller = Caller(api, engine, "caller-1", 1)
    high = cosine_with_llr(cal, first.accept + 3.0, first.accept + 6.0)
    accepted = caller.call(high).json()

    def weight() -> float:
        with api.service.db.transaction() as session:
            speaker = session.query(m.Speaker).filter(m.Speaker.speaker_ref == "caller-1").one()
            return float(speaker.lockout_weight or 0.0)

    before = weight()
    for _ in range(api.service.settings.lockout_rejects + 1):
        _refused(caller.call(high, retry_of=accepted["verification_id"]), 409, "RETRY_NOT_ALLOWED")
    assert weight() == before
    assert caller.call(high).json()["decision"] == "ACCEPT"


NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _row(decision: str, reasons: list[str], retry_of: str | None = None, age_s: float = 10.0) -> m.Verification:
    now = NOW
    return m.Verification(
        id="a" * 32,
        speaker_ref="caller",
        decision=decision,
        reasons=reasons,
        model_version=MODEL_VERSION,
        created_at=now - timedelta(seconds=age_s),
        retry_of=retry_of,
    )


@pytest.mark.parametrize(
    ("decision", "reasons", "retryable"),
    [
        ("INCONCLUSIVE", ["SCORE_BETWEEN_THRESHOLDS"], True),
        ("INCONCLUSIVE", ["INSUFFICIENT_SPEECH", "SCORE_ABOVE_ACCEPT_THRESHOLD"], True),
        ("INCONCLUSIVE", ["INSUFFICIENT_SPEECH", "SCORE_BELOW_REJECT_THRESHOLD"], True),
        ("INCONCLUSIVE", ["SCORE_ABOVE_ACCEPT_THRESHOLD", "SPOOF_SUSPECTED"], False),
        ("INCONCLUSIVE", ["SCORE_ABOVE_ACCEPT_THRESHOLD", "REPLAY_SUSPECTED"], False),
        ("INCONCLUSIVE", ["SCORE_BETWEEN_THRESHOLDS", "WATCHLIST_MATCH"], False),
        ("INCONCLUSIVE", ["SCORE_ABOVE_ACCEPT_THRESHOLD", "CHALLENGE_REQUIRED"], False),
        ("INCONCLUSIVE", ["SCORE_BETWEEN_THRESHOLDS", "LINKED_VOICE"], False),
        ("INCONCLUSIVE", ["SCORE_ABOVE_ACCEPT_THRESHOLD", "STREAM_ABANDONED"], False),
        ("ACCEPT", ["SCORE_ABOVE_ACCEPT_THRESHOLD"], False),
        ("REJECT", ["SCORE_BELOW_REJECT_THRESHOLD"], False),
        ("LOCKED", ["LOCKED_OUT"], False),
    ],
)
def test_only_a_call_inconclusive_for_lack_of_evidence_is_retried(
    decision: str, reasons: list[str], retryable: bool
) -> None:
    why = why_not_retryable(_row(decision, reasons), NOW, 300.0, None)
    assert (why is None) == retryable, why


def test_a_retry_is_refused_when_retried_already_late_or_itself_a_retry() -> None:
    now = NOW
    fine = ["SCORE_BETWEEN_THRESHOLDS"]
    assert why_not_retryable(_row("INCONCLUSIVE", fine), now, 300.0, None) is None
    assert "retried already" in (why_not_retryable(_row("INCONCLUSIVE", fine), now, 300.0, "b" * 32) or "")
    assert "older" in (why_not_retryable(_row("INCONCLUSIVE", fine, age_s=301.0), now, 300.0, None) or "")
    assert "itself a retry" in (
        why_not_retryable(_row("INCONCLUSIVE", fine, retry_of="c" * 32), now, 300.0, None) or ""
    )


def test_retry_thresholds_come_from_the_stricter_rate_or_the_llr_bound(calibration_file: Path) -> None:
    cal = load_calibrations(calibration_file)[0]
    first_accept, first_reject = cal.thresholds(0.001, 0.01)
    pair = retry_pair(cal, 0.001, 0.01, 0.5)
    assert pair.accept == max(round(cal.thresholds(0.0005, 0.01)[0], 2), round(first_accept, 2))
    assert pair.accept > round(first_accept, 2)
    assert pair.reject == min(round(first_reject, 2), round(first_accept, 2))
    # A rate no band has the non-target trials to show: the first pair raised by ln(1 / factor).
    tiny = retry_pair(cal, 0.001, 0.01, 1e-9)
    assert tiny.accept == round(round(first_accept, 2) + math.log(1e9), 2)
    assert stricter(Thresholds(3.0, -1.0), 0.5) == Thresholds(round(3.0 + math.log(2), 2), -1.0)


def test_pinned_thresholds_are_tightened_on_the_llr_scale_only() -> None:
    pinned = Thresholds(3.0, -1.0)
    llr = DecisionPolicy(
        by_channel={"phone": Thresholds(2.0, -1.0)},
        pinned=pinned,
        fallback=Thresholds(0.45, 0.3),
        target_fmr=0.001,
        target_fnmr=0.01,
        retry_fmr_factor=0.5,
    )
    assert llr.thresholds("phone", retry=True).thresholds == stricter(pinned, 0.5)
    assert llr.thresholds("phone").thresholds == pinned
    cosine = DecisionPolicy(
        by_channel={}, pinned=pinned, fallback=Thresholds(0.45, 0.3), target_fmr=0.001, target_fnmr=0.01
    )
    applied = cosine.thresholds("phone", retry=True)
    assert applied.scale is Scale.COSINE and applied.thresholds == pinned
