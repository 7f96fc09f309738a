import numpy as np
import pytest

from voiceid.audio.quality import QualityReport
from voiceid.verify.calibration import fit_calibration
from voiceid.verify.cohort import Cohort, find_cohort, read_cohort, save_cohort, service_channel
from voiceid.verify.decision import Decision, Reason, Thresholds, decide
from voiceid.verify.policy import DecisionPolicy, is_low_quality
from voiceid.verify.scorer import Scorer
from voiceid.verify.scoring import cosine


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _quality(speech: float, snr: float) -> QualityReport:
    return QualityReport(speech + 1, speech, snr, 0.0, 8000, "ULAW", "phone")


@pytest.fixture
def calibration():
    rng = np.random.default_rng(0)
    return fit_calibration(
        rng.normal(8, 2, 2000),
        rng.normal(0, 1, 50_000),
        channel="phone",
        norm="as-norm",
        model_version="m",
        fitted_on="synthetic",
    )


def test_channel_names() -> None:
    assert service_channel("g711-ulaw", 16000) == "phone"
    assert service_channel("clean", 8000) == "phone"
    assert service_channel("clean", 16000) == "wideband"


def test_cohort_files_round_trip_and_must_match_front_end(tmp_path) -> None:
    rng = np.random.default_rng(1)
    cohort = Cohort("phone", "m1", "fe-A", _unit(rng, 5), "test")
    path = save_cohort(tmp_path, cohort)
    back = read_cohort(path)
    np.testing.assert_array_equal(back.embeddings, cohort.embeddings)
    assert (back.channel, back.model_version, back.front_end) == ("phone", "m1", "fe-A")
    assert find_cohort([tmp_path], "m1", "phone", "fe-A") is not None
    assert find_cohort([tmp_path], "m1", "phone", "fe-B") is None  # other VAD settings: other embeddings
    assert find_cohort([tmp_path], "m2", "phone", "fe-A") is None  # other model: other space


def test_scorer_none_is_cosine() -> None:
    rng = np.random.default_rng(2)
    a, b = _unit(rng, 2)
    result = Scorer("none", 10, {}, {}).score(a, b, "phone")
    assert result.raw == pytest.approx(cosine(a, b)) and result.score == result.raw and result.llr is None


def test_scorer_as_norm_and_llr(calibration) -> None:
    rng = np.random.default_rng(3)
    cohort = _unit(rng, 50)
    a, b = _unit(rng, 2)
    scorer = Scorer("as-norm", 10, {"phone": cohort}, {"phone": calibration})
    result = scorer.score(a, b, "phone")
    raw, normalised = scorer.score_matrix(a[None], b[None], "phone")
    assert float(raw[0, 0]) == pytest.approx(result.raw)
    assert result.score == pytest.approx(float(normalised[0, 0]))
    assert result.raw == pytest.approx(cosine(a, b))
    assert result.llr == pytest.approx(calibration.llr(result.score))
    assert result.calibration_id == "phone/as-norm/synthetic"


def test_normalisation_without_cohort_is_refused() -> None:
    with pytest.raises(ValueError):
        Scorer("as-norm", 10, {}, {})


def test_policy_widens_the_band_for_poor_audio(calibration) -> None:
    policy = DecisionPolicy({"phone": calibration}, None, Thresholds(0.5, 0.3), 6.0, 15.0)
    good = policy.thresholds("phone", _quality(10, 30))
    short = policy.thresholds("phone", _quality(4, 30))
    noisy = policy.thresholds("phone", _quality(10, 5))
    assert not good.low_quality and short.low_quality and noisy.low_quality
    assert short.thresholds.accept > good.thresholds.accept
    assert short.thresholds.reject <= good.thresholds.reject
    # A score that good audio accepts is not accepted from poor audio.
    between = (good.thresholds.accept + short.thresholds.accept) / 2
    assert decide(between, good.thresholds, 10, 3).decision == Decision.ACCEPT
    poor = decide(between, short.thresholds, 4, 3, low_quality=True)
    assert poor.decision == Decision.INCONCLUSIVE and Reason.LOW_QUALITY_AUDIO in poor.reasons


def test_pinned_thresholds_override_calibration(calibration) -> None:
    pinned = Thresholds(9.0, 1.0)
    policy = DecisionPolicy({"phone": calibration}, pinned, Thresholds(0.5, 0.3), 6.0, 15.0)
    assert policy.thresholds("phone", _quality(1, 0)).thresholds == pinned


def test_unknown_channel_falls_back() -> None:
    policy = DecisionPolicy({}, None, Thresholds(0.5, 0.3), 6.0, 15.0)
    assert policy.thresholds("wideband").thresholds == Thresholds(0.5, 0.3)


def test_low_quality_rule() -> None:
    assert is_low_quality(_quality(5.9, 30), 6, 15)
    assert is_low_quality(_quality(10, 14.9), 6, 15)
    assert not is_low_quality(_quality(6, 15), 6, 15)
