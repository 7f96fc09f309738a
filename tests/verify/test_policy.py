import numpy as np
import pytest

from voiceid.verify.calibration import fit_calibration
from voiceid.verify.cohort import Cohort, find_cohort, read_cohort, save_cohort, service_channel
from voiceid.verify.decision import Decision, Outcome, Reason, Thresholds, decide, decide_many
from voiceid.verify.policy import DecisionPolicy, Scale, policy_from_calibrations
from voiceid.verify.scorer import Scorer
from voiceid.verify.vectors import cosine


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def calibration():
    rng = np.random.default_rng(0)
    tar, non = rng.normal(8, 2, 2000), rng.normal(0, 1, 50_000)
    return fit_calibration(
        tar,
        non,
        target_probe_s=rng.uniform(2, 15, len(tar)),
        nontarget_probe_s=rng.uniform(2, 15, len(non)),
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
    result = Scorer("none", 10, {}, {}).score(a, b, "phone", 6.0)
    assert result.raw == pytest.approx(cosine(a, b)) and result.score == result.raw and result.llr is None


def test_scorer_as_norm_and_llr(calibration) -> None:
    rng = np.random.default_rng(3)
    cohort = _unit(rng, 50)
    a, b = _unit(rng, 2)
    scorer = Scorer("as-norm", 10, {"phone": cohort}, {"phone": calibration})
    result = scorer.score(a, b, "phone", 7.0)
    raw, normalised = scorer.score_matrix(a[None], b[None], "phone")
    assert float(raw[0, 0]) == pytest.approx(result.raw)
    assert result.score == pytest.approx(float(normalised[0, 0]))
    assert result.raw == pytest.approx(cosine(a, b))
    assert result.llr == pytest.approx(calibration.llr(result.score, 7.0))
    assert result.calibration_id == "phone/as-norm/synthetic"


def test_scorer_tops_the_population_up_to_the_fixed_cohort_size() -> None:
    rng = np.random.default_rng(4)
    shipped, population = _unit(rng, 30), _unit(rng, 8)
    scorer = Scorer("as-norm", 5, {"phone": shipped}, {}, cohort_size=20)
    cohort = scorer.cohort_for("phone", population)
    assert len(cohort) == 20
    np.testing.assert_array_equal(cohort[:8], population)
    np.testing.assert_array_equal(cohort[8:], shipped[:12])
    assert len(scorer.cohort_for("phone", _unit(rng, 25))) == 20  # a full population replaces the shipped one
    assert len(scorer.cohort_for("phone", None)) == 20


def test_normalisation_without_cohort_is_refused() -> None:
    with pytest.raises(ValueError):
        Scorer("as-norm", 10, {}, {})


def test_policy_is_one_pair_per_channel_on_the_llr_scale(calibration) -> None:
    by_channel = policy_from_calibrations({"phone": calibration}, 0.001, 0.01)
    policy = DecisionPolicy(by_channel, None, Thresholds(0.5, 0.3), 0.001, 0.01)
    applied = policy.thresholds("phone")
    assert applied.scale is Scale.LLR
    accept, reject = calibration.thresholds(0.001, 0.01)
    assert applied.thresholds == Thresholds(round(accept, 2), round(reject, 2))
    # The same pair on every call of the channel, whatever the audio.
    assert policy.thresholds("phone") == applied and policy.thresholds(None) == applied
    # A stricter FMR target moves the accept threshold up.
    stricter = policy_from_calibrations({"phone": calibration}, 0.0002, 0.01)["phone"]
    assert stricter.accept >= applied.thresholds.accept


def test_decide_on_the_calibrated_value() -> None:
    pair = Thresholds(3.0, -1.0)
    assert decide(3.0, pair, 8, 3).decision == Decision.ACCEPT
    assert decide(-1.01, pair, 8, 3).decision == Decision.REJECT
    assert decide(0.0, pair, 8, 3) == Outcome(Decision.INCONCLUSIVE, (Reason.SCORE_BETWEEN_THRESHOLDS,))
    short = decide(9.0, pair, 2.0, 3)
    assert short.decision == Decision.INCONCLUSIVE and Reason.INSUFFICIENT_SPEECH in short.reasons
    values = np.array([3.0, -1.01, 0.0, 9.0])
    speech = np.array([8, 8, 8, 2.0])
    assert decide_many(values, pair, speech, 3).tolist() == [
        decide(v, pair, s, 3).decision.value for v, s in zip(values, speech, strict=True)
    ]


def test_pinned_thresholds_override_calibration(calibration) -> None:
    pinned = Thresholds(9.0, 1.0)
    policy = DecisionPolicy({"phone": Thresholds(3.0, 0.0)}, pinned, Thresholds(0.5, 0.3), 0.001, 0.01)
    assert policy.thresholds("phone").thresholds == pinned


def test_unknown_channel_falls_back_to_the_cosine_pair() -> None:
    policy = DecisionPolicy({}, None, Thresholds(0.5, 0.3), 0.001, 0.01)
    applied = policy.thresholds("wideband")
    assert applied.thresholds == Thresholds(0.5, 0.3) and applied.scale is Scale.COSINE
    with pytest.raises(ValueError):
        Thresholds(accept=0.3, reject=0.5)
