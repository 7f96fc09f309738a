"""The self-calibration through the service: the worker job fits on the enrolled population's own
non-target trials, every decision records the fit it was corrected with, /readyz names it, and a
population whose impostors score higher than the shipped calibration's stops getting ACCEPTed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from voiceid.models.files import MODEL_VERSION
from voiceid.storage import models as m
from voiceid.testkit.api import Api, count
from voiceid.testkit.calibrations import synthetic_calibration
from voiceid.testkit.engines import ScriptedEngine
from voiceid.verify.calibration import save_calibrations
from voiceid.worker.jobs import refit_self_calibration

DIM = 192


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def raw_calibration(tmp_path: Path) -> Path:
    """A raw-cosine phone calibration fitted on a population whose impostors score around 0.1."""
    cal = synthetic_calibration(np.random.default_rng(0), (0.75, 0.08), (0.10, 0.08))
    path = tmp_path / "calibration.json"
    save_calibrations([cal], path)
    return path


def _enrol_population(api: Api, engine: ScriptedEngine, rng: np.random.Generator, speakers: int) -> list[np.ndarray]:
    """`speakers` callers whose voices are alike (impostor cosines near 0.55, far above the calibration's
    0.1), each enrolled over HTTP from three utterances."""
    common = rng.standard_normal(DIM)
    voices = [_unit(common + 0.9 * rng.standard_normal(DIM)) for _ in range(speakers)]
    for i, voice in enumerate(voices):
        api.put_speaker(f"caller-{i}")
        for k in range(3):
            body = engine.register(f"enrol-{i}-{k}".encode(), _unit(voice + 0.25 * rng.standard_normal(DIM) / 4), 2.0)
            r = api.client.post(
                f"/v1/speakers/caller-{i}/enrolment-audio",
                content=body,
                headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
            )
            assert r.status_code == 200, r.text
        assert r.json()["status"] == "ENROLLED", r.text
    return voices


def test_the_population_fit_stops_impostors_the_shipped_calibration_would_accept(
    make_api, raw_calibration: Path
) -> None:
    engine = ScriptedEngine()
    api = make_api(
        engine=engine,
        pin_thresholds=False,
        calibration_file=raw_calibration,
        enrol_min_speech_s=5.0,
        duplicate_llr_threshold=50.0,  # look-alike voices on purpose: not duplicates for this test
        self_calibration=True,
    )
    rng = np.random.default_rng(1)
    voices = _enrol_population(api, engine, rng, 40)

    def impostor_accepts() -> tuple[int, list[dict]]:
        answers = []
        for i in range(0, 40, 2):
            probe = _unit(voices[i + 1] + 0.25 * rng.standard_normal(DIM) / 4)
            body = engine.register(f"probe-{rng.integers(1 << 62)}".encode(), probe, 6.0)
            answers.append(api.verify(f"caller-{i}", body))
        return sum(a["decision"] == "ACCEPT" for a in answers), answers

    before, answers = impostor_accepts()
    assert before >= 10, "the look-alike population must defeat the shipped calibration for the test to mean anything"
    assert all("+self:" not in (a.get("calibration") or "") for a in answers)

    assert refit_self_calibration(api.service.ctx) == 1
    assert refit_self_calibration(api.service.ctx) == 0  # same population, same fit: nothing new stored
    assert count(api.service.db, m.SelfCalibrationSnapshot) == 1

    after, answers = impostor_accepts()
    assert after == 0
    assert all("+self:" in a["calibration"] for a in answers)
    genuine = api.verify(
        "caller-3", engine.register(b"genuine-3", _unit(voices[3] + 0.25 * rng.standard_normal(DIM) / 4), 6.0)
    )
    assert genuine["decision"] == "ACCEPT", genuine
    ready = api.client.get("/readyz").json()
    held = ready["self_calibration"][MODEL_VERSION]
    assert held["version"] and held["speakers"] == 40


def test_self_calibration_off_changes_nothing(make_api, raw_calibration: Path) -> None:
    engine = ScriptedEngine()
    api = make_api(engine=engine, pin_thresholds=False, calibration_file=raw_calibration, self_calibration=False)
    assert refit_self_calibration(api.service.ctx) == 0
    assert count(api.service.db, m.SelfCalibrationSnapshot) == 0


def latest_cohort_size(api: Api) -> int:
    with api.service.db.transaction() as session:
        latest = session.scalars(select(m.CohortSnapshot).order_by(m.CohortSnapshot.id.desc()).limit(1)).first()
        return 0 if latest is None else latest.size


@pytest.fixture
def regime_calibrations(tmp_path: Path) -> Path:
    """Three regimes, as the shipped file has them: raw cosine below 3 enrolled callers, the cosine
    centred on the population's mean from 3, population AS-norm from 5 on (small here so the test is
    quick)."""
    rng = np.random.default_rng(2)
    fits = []
    for norm, start, (tar, non) in (("none", 0, (0.75, 0.1)), ("centre", 3, (0.6, 0.0)), ("as-norm", 5, (4.0, 0.0))):
        sd = 1.0 if norm == "as-norm" else 0.1
        fits.append(synthetic_calibration(rng, (tar, sd), (non, sd), 2000, 50_000, norm=norm, population_min=start))
    path = tmp_path / "regimes.json"
    save_calibrations(fits, path)
    return path


def test_the_regime_follows_the_population_from_the_first_caller(make_api, regime_calibrations: Path) -> None:
    """No refresh job runs here: the cohort follows each enrolment at once while the population is
    small, and each decision is taken (and logged) on the calibration of the regime it was scored in."""
    engine = ScriptedEngine()
    api = make_api(
        engine=engine,
        pin_thresholds=False,
        calibration_file=regime_calibrations,
        score_norm="as-norm",
        cohort_source="population",
        jobs_in_process=False,
        duplicate_llr_threshold=50.0,
    )
    rng = np.random.default_rng(3)
    voices = [_unit(rng.standard_normal(DIM)) for _ in range(7)]

    def enrol(i: int) -> None:
        api.put_speaker(f"c{i}")
        body = engine.register(f"e{i}".encode(), voices[i], 6.0)
        r = api.client.post(
            f"/v1/speakers/c{i}/enrolment-audio",
            content=body,
            headers={**api.h("enrolment"), "Content-Type": "audio/wav"},
        )
        assert r.json()["status"] == "ENROLLED", r.text

    def a_call() -> dict:
        body = engine.register(f"p{rng.integers(1 << 62)}".encode(), _unit(voices[0] + 0.1 * rng.standard_normal(DIM)))
        return api.verify("c0", body)

    for i in range(3):
        enrol(i)
        assert latest_cohort_size(api) == i + 1  # the snapshot followed this enrolment
    raw = a_call()
    assert raw["calibration"] == "phone/none/synthetic"  # 2 others in c0's cohort: the raw regime
    assert raw["score"] == pytest.approx(raw["raw_score"], abs=1e-3)  # rounded to 3 and 4 places
    enrol(3)
    centred = a_call()
    assert centred["calibration"] == "phone/centre/synthetic/pop>=3"  # 3 others: centred on their mean
    assert abs(centred["score"] - centred["raw_score"]) > 0.01
    enrol(4)
    enrol(5)
    assert latest_cohort_size(api) == 6
    assert a_call()["calibration"] == "phone/as-norm/synthetic/pop>=5"  # 5 others: normalised
