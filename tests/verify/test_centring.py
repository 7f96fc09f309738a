"""Population-mean centring (the regime between the raw cosine and AS-norm) and its regimes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceid.evaluation.calibration_fit import regime_specs
from voiceid.evaluation.protocol import Protocol, Utterance
from voiceid.evaluation.runner import pool_trials, regime_draws, score_population
from voiceid.evaluation.verification import EvaluationInputError
from voiceid.testkit.calibrations import synthetic_calibration
from voiceid.verify.cohort import sample_order
from voiceid.verify.normalisation import centre_scores, population_mean_sq
from voiceid.verify.policy import channel_regimes
from voiceid.verify.scorer import Scorer
from voiceid.verify.vectors import cosine, cosine_matrix, l2_normalise

DIM = 24


def _unit(rng: np.random.Generator, n: int, offset: np.ndarray | None = None) -> np.ndarray:
    x = rng.standard_normal((n, DIM)) + (0 if offset is None else offset)
    return l2_normalise(x.astype(np.float32))


def _centred(p: np.ndarray, v: np.ndarray, members: np.ndarray) -> float:
    """The definition: both sides as unit vectors, less the members' mean, then the cosine, less the
    1/(n + 1) that n members' mean lends every pair."""
    m = l2_normalise(members.astype(np.float64)).mean(axis=0)
    c = cosine(l2_normalise(p.astype(np.float64)) - m, l2_normalise(v.astype(np.float64)) - m)
    shared = 1 / (len(members) + 1)
    return (c - shared) / (1 - shared)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n_members=st.integers(1, 40), shared=st.floats(0.0, 3.0))
def test_centring_from_cosines_is_centring_the_vectors(seed: int, n_members: int, shared: float) -> None:
    rng = np.random.default_rng(seed)
    offset = shared * rng.standard_normal(DIM)
    members, probes, prints = _unit(rng, n_members, offset), _unit(rng, 3, offset), _unit(rng, 2, offset)
    got = centre_scores(
        cosine_matrix(probes, prints),
        cosine_matrix(prints, members),
        cosine_matrix(probes, members),
        population_mean_sq(members),
    )
    for i in range(3):
        for j in range(2):
            assert got[i, j] == pytest.approx(_centred(probes[i], prints[j], members), abs=1e-5)


def test_centring_takes_out_what_the_population_shares() -> None:
    """Strangers of one population (a shared accent, line or age: a common offset) look alike to the raw
    cosine; centred on the population's mean they are strangers again, and a genuine pair stays close."""
    rng = np.random.default_rng(0)
    offset = 2.0 * rng.standard_normal(DIM)
    people = rng.standard_normal((60, DIM)) + offset
    members = l2_normalise(people[:50])
    a, b = people[50], people[51]
    a_again = a + 0.3 * rng.standard_normal(DIM)
    raw_strangers = cosine(a, b)
    centred = centre_scores(
        np.array([[raw_strangers, cosine(a_again, a)]]),
        cosine_matrix(np.stack([b, a]), members),
        cosine_matrix(a_again[None, :], members),
        population_mean_sq(members),
    )
    assert raw_strangers > 0.6
    assert abs(centred[0, 0]) < 0.35
    assert centred[0, 1] > 0.8


def test_strangers_score_alike_whatever_the_population_size() -> None:
    """Without taking out what the mean's noise lends every pair, strangers centred on 5 members
    score about 1/6 higher on average than on 200: the score would mean something else at every size."""
    rng = np.random.default_rng(5)
    dim = 64
    offset = 1.5 * rng.standard_normal(dim)
    means = {}
    for n in (5, 200):
        got = []
        for _ in range(200):
            people = l2_normalise(rng.standard_normal((n + 2, dim)) + offset)
            members, a, b = people[:n], people[n : n + 1], people[n + 1 :]
            got.append(
                centre_scores(
                    cosine_matrix(a, b),
                    cosine_matrix(b, members),
                    cosine_matrix(a, members),
                    population_mean_sq(members),
                )[0, 0]
            )
        means[n] = float(np.mean(got))
    assert abs(means[5] - means[200]) < 0.03
    assert abs(means[200]) < 0.03


def test_a_probe_equal_to_the_mean_stays_finite() -> None:
    member = _unit(np.random.default_rng(1), 1)
    out = centre_scores(np.array([[1.0]]), np.array([[1.0]]), np.array([[1.0]]), population_mean_sq(member))
    assert np.isfinite(out).all()


def _regime_scorer(rng: np.random.Generator) -> Scorer:
    """Raw cosine below 3 enrolled members, centring from 3, AS-norm from 6."""
    fits = [
        synthetic_calibration(rng, (0.7, 0.1), (0.1, 0.1), 500, 20_000, norm="none"),
        synthetic_calibration(rng, (0.6, 0.1), (0.0, 0.1), 500, 20_000, norm="centre", population_min=3),
        synthetic_calibration(rng, (4.0, 1.0), (0.0, 1.0), 500, 20_000, norm="as-norm", population_min=6),
    ]
    return Scorer("as-norm", 3, {"phone": _unit(rng, 20)}, {"phone": fits}, cohort_size=50)


def test_the_scorer_centres_in_the_centring_regime_only() -> None:
    rng = np.random.default_rng(2)
    scorer = _regime_scorer(rng)
    probe, voiceprint = _unit(rng, 1)[0], _unit(rng, 1)[0]
    population = _unit(rng, 8)
    raw = cosine(probe, voiceprint)

    few = scorer.score(probe, voiceprint, "phone", 4.0, population[:2])
    assert (few.norm, few.calibration_id, few.score) == ("none", "phone/none/synthetic", pytest.approx(raw))

    some = scorer.score(probe, voiceprint, "phone", 4.0, population[:4])
    assert (some.norm, some.calibration_id) == ("centre", "phone/centre/synthetic/pop>=3")
    assert some.raw == pytest.approx(raw)
    # centred on the enrolled members only: the shipped cohort is another population
    assert some.score == pytest.approx(_centred(probe, voiceprint, population[:4]), abs=1e-5)
    assert some.llr is not None

    many = scorer.score(probe, voiceprint, "phone", 4.0, population)
    assert (many.norm, many.calibration_id) == ("as-norm", "phone/as-norm/synthetic/pop>=6")


def test_the_service_regimes_put_centring_between_the_raw_cosine_and_the_normalisation() -> None:
    rng = np.random.default_rng(3)
    none = synthetic_calibration(rng, (0.7, 0.1), (0.1, 0.1), 200, 5_000, norm="none")
    centre = synthetic_calibration(rng, (0.6, 0.1), (0.0, 0.1), 200, 5_000, norm="centre", population_min=10)
    late = synthetic_calibration(rng, (0.6, 0.1), (0.0, 0.1), 200, 5_000, norm="centre", population_min=200)
    asnorm = synthetic_calibration(rng, (4.0, 1.0), (0.0, 1.0), 200, 5_000, norm="as-norm", population_min=100)
    got = channel_regimes([asnorm, late, centre, none], "as-norm")
    # a centring regime fitted above where the normalisation starts is never used
    assert [(c.norm, c.population_min) for c in got] == [("none", 0), ("centre", 10), ("as-norm", 100)]
    assert channel_regimes([none, centre], "none") == [none]  # a raw-cosine service has no regimes


def test_regime_specs() -> None:
    assert regime_specs("as-norm", "population", ["none", "centre:10", "100"]) == [
        ("none", None),
        ("centre", 10),
        ("as-norm", 100),
    ]
    assert regime_specs("as-norm", "builtin", ["centre:10"]) == [("as-norm", None)]
    for bad in ("centre", "centre:0", "snorm:10", "ten"):
        with pytest.raises(EvaluationInputError):
            regime_specs("as-norm", "population", [bad])


def test_regime_draws() -> None:
    assert regime_draws("as-norm", 105, 100) == [0]
    assert regime_draws("centre", 105, None) == [0]
    assert regime_draws("centre", 105, 103) == [0]  # every other speaker is a member already
    assert regime_draws("centre", 105, 30) == [0, 26, 52, 78]  # 4 disjoint draws
    assert regime_draws("centre", 40, 15) == [0, 13, 26]


def test_the_evaluation_centres_each_trial_as_the_service_does() -> None:
    """`voiceid eval`/`calibrate` score a centring regime trial for trial as `Scorer.score` does with the
    cohort's enrolled members: the population less the claimed and the test speaker, in sampling order,
    at most `population_limit` of them."""
    rng = np.random.default_rng(4)
    offset = 1.5 * rng.standard_normal(DIM)
    speakers = [f"s{i}" for i in range(9)]
    vectors: dict[str, np.ndarray] = {}
    enrolment, tests = {}, []
    for s in speakers:
        centre = rng.standard_normal(DIM) + offset
        utts = [Utterance(f"{s}-{k}", s, Path(f"{s}-{k}.flac")) for k in range(3)]
        for u in utts:
            vectors[u.utt_id] = l2_normalise((centre + 0.4 * rng.standard_normal(DIM)).astype(np.float32))
        enrolment[s], tests = utts[:2], [*tests, utts[2]]
    protocol = Protocol(enrolment, tests)
    scorer = Scorer("centre", 3, {"phone": _unit(rng, 20)}, {}, cohort_size=50)
    limit = 4
    got = score_population(protocol, vectors, scorer, "phone", population_limit=limit)
    prints = {s: l2_normalise(np.mean([vectors[u.utt_id] for u in enrolment[s]], axis=0)) for s in speakers}
    order = [speakers[k] for k in sample_order(speakers)]
    for i, probe in enumerate(tests):
        for j, claimed in enumerate(speakers):
            members = [s for s in order if s not in (claimed, probe.speaker_id)][:limit]
            expected = _centred(vectors[probe.utt_id], prints[claimed], np.stack([prints[s] for s in members]))
            assert got.scores[i, j] == pytest.approx(expected, abs=1e-5)
    # another draw centres on other members; pooled, each probe appears once per draw
    other = score_population(protocol, vectors, scorer, "phone", population_limit=limit, rotation=4)
    assert not np.allclose(other.scores, got.scores)
    pooled = pool_trials([got, other])
    assert pooled.scores.shape == (2 * len(tests), len(speakers)) and pooled.test_ids[: len(tests)] == got.test_ids
