"""The decision policy as a deployment of a given size meets it, with the shipped or the self-calibration.

- `regime_trials`: the protocol's trials scored as the service scores them when `population` callers
  are enrolled: the regime's calibration (raw cosine below the first normalised regime, the centred
  cosine or population AS-norm from it on) and a cohort of at most `population - 1` enrolled
  voiceprints (several draws of them for a centring regime: runner.regime_draws).
- `policy_by_calibration`: 2 folds by speaker. Each fold's trials (test speaker and claimed speaker both
  in the fold) are decided with the shipped calibration, and with the self-calibration fitted the way
  the worker fits it (voiceid/services/calibration.py) on the *other* fold's population: its enrolment
  utterances against its other voiceprints, non-target trials only, no label from the test speakers.
  So the fit never saw either speaker of a trial it decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings
from voiceid.evaluation.operating_point import operating_point
from voiceid.evaluation.protocol import Protocol
from voiceid.evaluation.runner import EvalRun, FloatArray, TrialScores, score_protocol
from voiceid.verify.calibration import Calibration, select_calibration
from voiceid.verify.decision import Thresholds
from voiceid.verify.normalisation import NormMethod
from voiceid.verify.policy import thresholds_by_calibration
from voiceid.verify.selfcal import ChannelShift, fit_channel_shift

CALIBRATIONS = ("shipped", "self")


@dataclass(frozen=True)
class Regime:
    calibration: Calibration
    thresholds: Thresholds
    population: int | None  # enrolled callers the regime stands for (None: the whole protocol)


def regime_for(regimes: Sequence[Calibration], settings: Settings, population: int | None) -> Regime:
    """The calibration a service with `population` enrolled callers decides with (each claimed speaker's
    cohort holds the other `population - 1`)."""
    members = None if population is None else max(population - 1, 0)
    calibration = select_calibration(regimes, members)
    pairs = thresholds_by_calibration({calibration.channel: [calibration]}, settings.target_fmr, settings.target_fnmr)
    return Regime(calibration, pairs[calibration.calibration_id], population)


def _score(
    run: EvalRun, protocol: Protocol, regime: Regime, settings: Settings, claimed: FloatArray | None = None
) -> TrialScores:
    norm = cast(NormMethod, regime.calibration.norm)
    scorer = run.scorer(norm, settings.score_top_n, cohort_size=settings.cohort_size)
    if norm == "none":
        return score_protocol(
            protocol, run.vectors, scorer, run.service_channel, run.speech, run.claim_vectors, claimed
        )
    limit = None if regime.population is None else max(regime.population - 1, 0)
    return run.population_trials(scorer, protocol, limit, claimed)


def regime_trials(
    run: EvalRun,
    regime: Regime,
    settings: Settings,
    protocol: Protocol | None = None,
    claimed: FloatArray | None = None,
) -> TrialScores:
    """`protocol`: other probes of the run's speakers (default: the run's own); `claimed`: voiceprints to
    score against instead of the enrolled ones, row for row with the speakers (adapted voiceprints)."""
    return _score(run, protocol or run.protocol, regime, settings, claimed)


def population_trials(run: EvalRun, regime: Regime, settings: Settings) -> TrialScores:
    """What the worker's fit reads: every speaker's enrolment utterances against every voiceprint."""
    enrolment = run.protocol.enrolment
    probes = Protocol(enrolment, [u for utts in enrolment.values() for u in utts])
    return _score(run, probes, regime, settings)


def _speech(trials: TrialScores) -> npt.NDArray[np.float64]:
    if trials.probe_speech_s is None:
        raise ValueError("the policy needs each probe's net speech (embed with a speech meter)")
    return trials.probe_speech_s


def _speaker_of_rows(trials: TrialScores) -> npt.NDArray[np.str_]:
    return np.array([trials.speakers[int(np.argmax(r))] if r.any() else "" for r in trials.is_target])


def fit_on(population: TrialScores, speakers: set[str], regime: Regime, settings: Settings) -> ChannelShift:
    """The self-calibration the worker would fit if `speakers` were the whole enrolled population."""
    from voiceid.services.calibration import limits_from

    owner = _speaker_of_rows(population)
    rows = np.array([o in speakers for o in owner])
    cols = np.array([s in speakers for s in population.speakers])
    scores = population.scores[np.ix_(rows, cols)]
    non = ~population.is_target[np.ix_(rows, cols)]
    speech = _speech(population)[rows]
    probe_s = np.broadcast_to(speech[:, None], scores.shape)
    owners = np.broadcast_to(owner[rows][:, None], scores.shape)
    claimed = np.broadcast_to(np.array(population.speakers)[cols][None, :], scores.shape)
    llr = regime.calibration.llrs(scores, speech[:, None])
    return fit_channel_shift(
        llr[non],
        probe_s[non],
        owners[non],
        claimed[non],
        regime.calibration,
        regime.thresholds.accept,
        settings.target_fmr,
        limits_from(settings),
    )


def policy_by_calibration(run: EvalRun, regime: Regime, settings: Settings) -> dict[str, Any]:
    """The policy section per calibration (shipped, self) on within-fold trials, folds pooled."""
    trials = regime_trials(run, regime, settings)
    population = population_trials(run, regime, settings)
    speakers = trials.speakers
    folds = [set(speakers[0::2]), set(speakers[1::2])]
    owner = _speaker_of_rows(trials)
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in CALIBRATIONS}
    shifts = []
    for fit_fold, test_fold in ((folds[0], folds[1]), (folds[1], folds[0])):
        rows = np.array([o in test_fold for o in owner])
        cols = np.array([s in test_fold for s in speakers])
        scores = trials.scores[np.ix_(rows, cols)]
        is_target = trials.is_target[np.ix_(rows, cols)]
        probe_s = _speech(trials)[rows]
        llr = regime.calibration.llrs(scores, probe_s[:, None])
        shift = fit_on(population, fit_fold, regime, settings)
        shifts.append(shift)
        for name, values in (("shipped", llr), ("self", llr - shift.shifts_for(probe_s)[:, None])):
            points[name].append(
                operating_point(values, is_target, probe_s, regime.thresholds, settings.verify_min_speech_s)
            )
    return {
        "calibration": regime.calibration.calibration_id,
        "population": regime.population,
        "accept_threshold": regime.thresholds.accept,
        "reject_threshold": regime.thresholds.reject,
        "by_calibration": {name: pool_points(p) for name, p in points.items()},
        "self_calibration_shifts": [
            [{"band": b.band, "method": str(b.method), "n": b.n_trials, "shift": b.shift} for b in s.bands]
            for s in shifts
        ],
    }


def _pool(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {key: sum(node[key] for node in nodes) for key in ("n", "accept", "inconclusive", "reject")}
    n = counts["n"]
    rates = {f"{key}_rate": (counts[key] / n if n else None) for key in ("accept", "inconclusive", "reject")}
    return {**counts, **rates}


def pool_points(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the counts of several operating points (folds) into one, rates recomputed."""
    out: dict[str, Any] = {
        "genuine": _pool([p["genuine"] for p in points]),
        "impostor": _pool([p["impostor"] for p in points]),
        "bands": [
            {
                "band": band["band"],
                "genuine": _pool([p["bands"][k]["genuine"] for p in points]),
                "impostor": _pool([p["bands"][k]["impostor"] for p in points]),
            }
            for k, band in enumerate(points[0]["bands"])
        ],
    }
    out["genuine_accept_rate"] = out["genuine"]["accept_rate"]
    out["genuine_inconclusive_rate"] = out["genuine"]["inconclusive_rate"]
    out["impostor_accept_rate"] = out["impostor"]["accept_rate"]
    return out
