"""Quality-aware calibration of scores to log-likelihood ratios, and one policy stated in error rates.

A score alone does not say how much it should be believed: the same normalised score is strong
evidence from 12 s of speech and weak evidence from 2 s. Calibration therefore maps the score
*and* the evidence behind it (the probe's net speech) to a natural-log
likelihood ratio of "same speaker" against "different speaker", with a quality measure function
in the style of the NIST SRE / BOSARIS systems:

    llr = w_s * s + w_p * log(probe_s) + w_sp * s * log(probe_s) + b

fitted by prior-weighted logistic regression. The voiceprint's net speech is not a feature: in the
dev protocol every voiceprint is three utterances (about 8 s), so its weight cannot be identified,
and a first fit that used it extrapolated to -1.1 nats for the service's default 20 s enrolment,
turning genuine callers INCONCLUSIVE. The score/duration interaction lets the slope grow with the
probe's length, so there is no cliff at any duration: a short call simply carries less evidence. The
LLR is clipped to what the calibration data can support (no impostor trial among n can show odds
beyond about n:1), which is why a 7 s clip can no longer claim 23 nats.

The policy is stated in error rates (target FMR at ACCEPT, target FNMR at REJECT) and turned into
one pair of LLR thresholds per channel: the accept threshold is the strictest of the per-band
thresholds that meet the FMR target (so it holds in every net-speech band, not only on average),
the reject threshold the most lenient of the per-band FNMR thresholds. The calibration file keeps
the tails of the calibration trials' LLRs per band, so the service derives the thresholds for
whatever targets the operator sets, without refitting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from voiceid.verify.metrics import cllr as cllr_of
from voiceid.verify.metrics import min_cllr as min_cllr_of

Scores = npt.NDArray[np.floating]
FORMAT_VERSION = 2

# Durations enter as logs, clipped: below half a second nothing is embedded; beyond a minute more
# speech adds little, and the clip keeps an unusually long call from extrapolating the fit.
SPEECH_MIN_S = 0.5
SPEECH_MAX_S = 60.0
FEATURES = ("score", "log_probe_speech", "score_x_log_probe_speech")

# Regimes `voiceid calibrate` fits by default (what the shipped file holds for each channel): the raw
# cosine ("none") for the first callers, then the cosine centred on the enrolled population's mean
# ("centre:N": fitted with N members in each trial's cohort, used from N on). The shipped file also holds
# population AS-norm from 100 callers (`--norm as-norm --regimes 100`) for VOICEID_SCORE_NORM=as-norm.
# On the dev set (docs/decision-policy.md, bench/regimes.py) centring beat the raw cosine from 5 members
# on both channels, while AS-norm against a few in-domain voices topped up with the shipped LibriSpeech
# cohort was far worse than both (genuine ACCEPT at FMR 0.1 %: 58-73 % against 89 % raw, single clean
# utterances), and at ~100 members centring matched or beat it (cross-validated). Centred impostor scores
# still fall a little as the mean firms up (0.04 between 5 and 100 members, once `centre_scores` takes out
# the 1/(n+1) every pair shares), so the regimes come at several sizes: each is exact at its size and errs
# toward fewer false accepts above it.
DEFAULT_REGIMES: tuple[str, ...] = ("none", "centre:5", "centre:10", "centre:20", "centre:30", "centre:100")

# Net-speech bands of the probe in which the FMR target must hold (and in which eval reports).
BAND_EDGES = (3.0, 6.0, 10.0)
# A band's thresholds come from its own trials only when they can show the target rate: at least
# this many non-target trials expected above the threshold (else the band cannot vouch for it).
MIN_EXPECTED_ERRORS = 2.0
# Share of each class kept in the calibration file's tails: enough to set thresholds for any FMR
# up to NONTARGET_TAIL and any FNMR up to TARGET_TAIL.
NONTARGET_TAIL = 0.02
TARGET_TAIL = 0.25


def band_labels(edges: Sequence[float] = BAND_EDGES) -> list[str]:
    bounds = [0.0, *edges]
    labels = [f"{lo:g}-{hi:g}s" for lo, hi in zip(bounds, edges, strict=False)]
    labels[0] = f"<{edges[0]:g}s"
    return [*labels, f">={edges[-1]:g}s"]


def band_of(net_speech_s: npt.ArrayLike, edges: Sequence[float] = BAND_EDGES) -> npt.NDArray[np.int64]:
    """Index of the net-speech band of each probe (0 = shortest)."""
    return np.searchsorted(np.asarray(edges), np.asarray(net_speech_s, dtype=np.float64), side="right").astype(np.int64)


def _log_speech(seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.log(np.clip(np.asarray(seconds, dtype=np.float64), SPEECH_MIN_S, SPEECH_MAX_S))


def quality_features(scores: npt.ArrayLike, probe_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, len(FEATURES)) design matrix; scalars broadcast."""
    s, p = np.broadcast_arrays(np.asarray(scores, dtype=np.float64), _log_speech(probe_s))
    return np.stack([s.ravel(), p.ravel(), (s * p).ravel()], axis=1)


def fit_logistic_features(
    target: npt.NDArray[np.float64], nontarget: npt.NDArray[np.float64], prior: float = 0.5, l2: float = 1e-3
) -> tuple[npt.NDArray[np.float64], float]:
    """(weights, bias) minimising the prior-weighted cross-entropy of `w·x + b` as an LLR.

    Each class is weighted by prior / class size, so the fit does not depend on how many
    non-target trials the protocol happens to produce. A small ridge keeps the weights of
    near-constant features (every voiceprint of a protocol has about the same net speech)
    from drifting.
    """
    tar = np.atleast_2d(np.asarray(target, dtype=np.float64))
    non = np.atleast_2d(np.asarray(nontarget, dtype=np.float64))
    if len(tar) == 0 or len(non) == 0:
        raise ValueError("calibration needs target and non-target trials")
    logit_prior = math.log(prior / (1 - prior))
    both = np.concatenate([tar, non])
    centre = both.mean(axis=0)
    scale = np.maximum(both.std(axis=0), 1e-9)
    ts, ns = (tar - centre) / scale, (non - centre) / scale
    dim = ts.shape[1]

    def objective(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w, b = params[:dim], params[dim]
        lt = ts @ w + b + logit_prior
        ln = ns @ w + b + logit_prior
        cost = prior * np.mean(np.logaddexp(0, -lt)) + (1 - prior) * np.mean(np.logaddexp(0, ln))
        cost += l2 * float(w @ w)
        gt = -prior / (1 + np.exp(lt)) / len(ts)  # d cost / d lt
        gn = (1 - prior) / (1 + np.exp(-ln)) / len(ns)
        grad_w = ts.T @ gt + ns.T @ gn + 2 * l2 * w
        grad_b = float(gt.sum() + gn.sum())
        return float(cost), np.append(grad_w, grad_b)

    x0 = np.zeros(dim + 1)
    x0[0] = 1.0
    result = minimize(objective, x0=x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 2000})
    w_scaled, b_scaled = result.x[:dim], float(result.x[dim])
    weights = w_scaled / scale
    return weights, b_scaled - float(weights @ centre)


def fit_logistic(target: Scores, nontarget: Scores, prior: float = 0.5) -> tuple[float, float]:
    """(slope, offset) of a score-only calibration (the 1-feature case)."""
    weights, bias = fit_logistic_features(
        np.asarray(target, dtype=np.float64)[:, None], np.asarray(nontarget, dtype=np.float64)[:, None], prior, l2=0.0
    )
    return float(weights[0]), bias


@dataclass(frozen=True)
class BandTail:
    """The calibration trials of one net-speech band of the probe, as far as thresholds need them."""

    label: str
    n_target: int
    n_nontarget: int
    nontarget_top: list[float]  # the highest non-target LLRs, descending
    target_bottom: list[float]  # the lowest target LLRs, ascending
    cllr: float | None = None
    min_cllr: float | None = None
    # Moments of the band's non-target LLRs: what the self-calibration compares a population's own
    # non-target trials with while it has too few of them to read a tail (verify/selfcal.py).
    nontarget_mean: float | None = None
    nontarget_std: float | None = None

    def accept_threshold(self, fmr: float) -> float | None:
        """Lowest LLR threshold at which at most `fmr` of this band's non-targets are accepted
        (accept when llr >= threshold); None when the band has too few trials to show it."""
        if self.n_nontarget * fmr < MIN_EXPECTED_ERRORS:
            return None
        allowed = math.floor(fmr * self.n_nontarget)
        if allowed >= len(self.nontarget_top):
            raise ValueError(f"the stored tail of band {self.label} is too short for FMR {fmr}")
        return float(np.nextafter(self.nontarget_top[allowed], np.inf))

    def reject_threshold(self, fnmr: float) -> float | None:
        """Highest LLR threshold under which at most `fnmr` of this band's targets fall."""
        if self.n_target * fnmr < MIN_EXPECTED_ERRORS:
            return None
        allowed = math.floor(fnmr * self.n_target)
        if allowed >= len(self.target_bottom):
            raise ValueError(f"the stored tail of band {self.label} is too short for FNMR {fnmr}")
        return float(self.target_bottom[allowed])


@dataclass(frozen=True)
class Calibration:
    """Score + evidence -> LLR for one channel and normalisation, and the trials' LLR tails."""

    channel: str  # "phone" or "wideband"
    norm: str  # normalisation the scores were computed with
    model_version: str
    weights: dict[str, float]  # one per FEATURES
    bias: float
    llr_min: float
    llr_max: float
    bands: list[BandTail]
    n_target: int
    n_nontarget: int
    fitted_on: str
    cllr: float | None = None
    min_cllr: float | None = None
    format_version: int = FORMAT_VERSION
    band_edges: list[float] = field(default_factory=lambda: list(BAND_EDGES))
    # The normalisation regime the trials were scored in: at least this many of the operator's own
    # enrolled voiceprints in the trial's cohort (the rest topped up from the shipped cohort). A
    # normalised score means something else against 10 in-domain impostors than against 1 000, so
    # the service picks the calibration of the regime its cohort snapshot is in (`select_calibration`).
    population_min: int = 0

    @property
    def calibration_id(self) -> str:
        regime = f"/pop>={self.population_min}" if self.population_min else ""
        return f"{self.channel}/{self.norm}/{self.fitted_on}{regime}"

    def llrs(self, scores: npt.ArrayLike, probe_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = quality_features(scores, probe_s)
        w = np.array([self.weights[name] for name in FEATURES])
        out: npt.NDArray[np.float64] = np.clip(x @ w + self.bias, self.llr_min, self.llr_max)
        shape = np.broadcast_shapes(np.shape(scores), np.shape(probe_s))
        return out.reshape(shape)

    def llr(self, score: float, probe_s: float) -> float:
        return float(self.llrs(score, probe_s))

    def thresholds(self, target_fmr: float, target_fnmr: float) -> tuple[float, float]:
        """(accept, reject) on the LLR scale for these targets.

        Accept: the strictest band threshold that meets `target_fmr`, so the FMR holds in every band
        that has the trials to show it. Reject: the most lenient band threshold meeting
        `target_fnmr`, so no band loses more genuine callers than that. Reject never exceeds accept.
        """
        accepts = [t for t in (b.accept_threshold(target_fmr) for b in self.bands) if t is not None]
        rejects = [t for t in (b.reject_threshold(target_fnmr) for b in self.bands) if t is not None]
        if not accepts:
            raise ValueError(f"no band of {self.calibration_id} has the non-target trials to show FMR {target_fmr}")
        accept = max(accepts)
        # A band too small to show the FNMR target cannot set the reject threshold; with none, the
        # lowest LLR the calibration allows rejects nothing but the hopeless.
        reject = min(rejects) if rejects else self.llr_min
        return accept, min(reject, accept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"calibration format {data.get('format_version', 1)} is not {FORMAT_VERSION}: "
                "re-run `voiceid calibrate`"
            )
        values = dict(data)
        values["bands"] = [BandTail(**b) for b in data["bands"]]
        return cls(**values)


def _tail(values: npt.NDArray[np.float64], descending: bool) -> list[float]:
    keep = max(1, math.ceil((NONTARGET_TAIL if descending else TARGET_TAIL) * len(values)) + 1)
    ordered = np.sort(values)[::-1] if descending else np.sort(values)
    return [float(v) for v in ordered[:keep]]  # unrounded: a rounded tail would be off by a trial


def fit_calibration(
    target_scores: Scores,
    nontarget_scores: Scores,
    *,
    target_probe_s: npt.ArrayLike,
    nontarget_probe_s: npt.ArrayLike,
    channel: str,
    norm: str,
    model_version: str,
    fitted_on: str,
    prior: float = 0.5,
    population_min: int = 0,
) -> Calibration:
    """Fit the quality-aware calibration on trials and keep their LLR tails per band."""
    tar_x = quality_features(target_scores, target_probe_s)
    non_x = quality_features(nontarget_scores, nontarget_probe_s)
    weights, bias = fit_logistic_features(tar_x, non_x, prior)
    n_tar, n_non = len(tar_x), len(non_x)
    # No trial set of n impostors can show odds beyond about n:1 (nor n targets beyond 1:n).
    llr_max, llr_min = math.log(n_non), -math.log(n_tar)
    tar_llr = np.clip(tar_x @ weights + bias, llr_min, llr_max)
    non_llr = np.clip(non_x @ weights + bias, llr_min, llr_max)
    tar_band = band_of(np.broadcast_to(np.asarray(target_probe_s, dtype=np.float64), (n_tar,)))
    non_band = band_of(np.broadcast_to(np.asarray(nontarget_probe_s, dtype=np.float64), (n_non,)))
    bands = []
    for k, label in enumerate(band_labels()):
        t, n = tar_llr[tar_band == k], non_llr[non_band == k]
        both = len(t) > 0 and len(n) > 0
        bands.append(
            BandTail(
                label=label,
                n_target=len(t),
                n_nontarget=len(n),
                nontarget_top=_tail(n, descending=True) if len(n) else [],
                target_bottom=_tail(t, descending=False) if len(t) else [],
                cllr=round(cllr_of(t, n), 4) if both else None,
                min_cllr=round(min_cllr_of(t, n), 4) if both else None,
                nontarget_mean=float(n.mean()) if len(n) else None,
                nontarget_std=float(n.std()) if len(n) > 1 else None,
            )
        )
    return Calibration(
        channel=channel,
        norm=norm,
        model_version=model_version,
        weights={name: float(w) for name, w in zip(FEATURES, weights, strict=True)},
        bias=float(bias),
        llr_min=llr_min,
        llr_max=llr_max,
        bands=bands,
        n_target=n_tar,
        n_nontarget=n_non,
        fitted_on=fitted_on,
        cllr=round(cllr_of(tar_llr, non_llr), 4),
        min_cllr=round(min_cllr_of(tar_llr, non_llr), 4),
        population_min=population_min,
    )


def save_calibrations(calibrations: list[Calibration], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"calibrations": [c.to_dict() for c in calibrations]}, indent=1) + "\n")


def load_calibrations(path: Path) -> list[Calibration]:
    data = json.loads(path.read_text())
    return [Calibration.from_dict(c) for c in data["calibrations"]]


def _key(c: Calibration) -> tuple[str, str, str, int]:
    return (c.channel, c.norm, c.model_version, c.population_min)


def merge_calibration(existing: list[Calibration], new: Calibration) -> list[Calibration]:
    """Replace the entry for the same channel, normalisation, model and regime; keep the others."""
    return [c for c in existing if _key(c) != _key(new)] + [new]


def select_calibration(regimes: Sequence[Calibration], n_population: int | None) -> Calibration:
    """The calibration of the regime a trial's cohort is in: the largest `population_min` that does not
    exceed the number of enrolled voiceprints in the cohort (None: the fullest regime, for callers
    that score outside any cohort regime, such as the fraud scale's defaults).

    Rounding down is the safe side: more in-domain cohort members raise the cohort statistics and
    lower normalised scores, so a regime's calibration read slightly above its own member count
    errs toward fewer false accepts, not more."""
    ordered = sorted(regimes, key=lambda c: c.population_min)
    if not ordered:
        raise ValueError("no calibration to select from")
    if n_population is None:
        return ordered[-1]
    chosen = ordered[0]
    for calibration in ordered:
        if calibration.population_min <= n_population:
            chosen = calibration
    return chosen
