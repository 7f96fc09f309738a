"""`voiceid eval`: embed a manifest through a channel, score the trials, report the metrics."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings
from voiceid.errors import VoiceIdError
from voiceid.evaluation.channel import PHONE_VIEW_CHANNEL, through_channel
from voiceid.evaluation.embedders import EmbedFn, SpeechFn
from voiceid.evaluation.protocol import Protocol, Utterance
from voiceid.verify import metrics
from voiceid.verify.calibration import Calibration
from voiceid.verify.cohort import PHONE, WIDEBAND, service_channel
from voiceid.verify.normalisation import NormMethod
from voiceid.verify.scorer import Scorer
from voiceid.verify.vectors import build_voiceprint, cosine_matrix

FloatArray = npt.NDArray[np.float32]
Progress = Callable[[Iterable[Utterance]], Iterable[Utterance]]


@dataclass(frozen=True)
class TrialScores:
    scores: FloatArray  # (n_tests, n_speakers)
    is_target: npt.NDArray[np.bool_]  # same shape
    test_ids: list[str]
    speakers: list[str]
    probe_speech_s: npt.NDArray[np.float64] | None = None  # (n_tests,) net speech of each probe

    @property
    def target(self) -> FloatArray:
        return self.scores[self.is_target]

    @property
    def nontarget(self) -> FloatArray:
        return self.scores[~self.is_target]

    def subset(self, rows: npt.NDArray[np.bool_], cols: npt.NDArray[np.bool_]) -> TrialScores:
        """The trials of the probes in `rows` against the voiceprints in `cols` (boolean masks)."""
        return TrialScores(
            self.scores[np.ix_(rows, cols)],
            self.is_target[np.ix_(rows, cols)],
            [t for t, keep in zip(self.test_ids, rows, strict=True) if keep],
            [s for s, keep in zip(self.speakers, cols, strict=True) if keep],
            None if self.probe_speech_s is None else self.probe_speech_s[rows],
        )


class EmbeddingCache:
    """Embeddings on disk keyed by everything that determines them (bytes, embedder, settings)."""

    def __init__(self, directory: Path | None, salt: str) -> None:
        self.directory = directory
        self.salt = salt

    @classmethod
    def for_embedder(cls, settings: Settings, embedder: str, enabled: bool = True) -> EmbeddingCache:
        """The cache under the data dir, keyed by model, embedder and every front-end setting that
        shapes an embedding, so a changed VAD setting re-embeds instead of reusing stale vectors."""
        from voiceid.audio.frontend import FrontEndConfig
        from voiceid.models.files import MODEL_VERSION
        from voiceid.models.registry import backend_model_version

        # The product's vectors carry its inference backend's version (a bf16 or int8 backend
        # must not read fp32 vectors back); the bare baseline always runs the fp32 checkpoint.
        version = (
            backend_model_version(settings.model_dir, settings.inference_backend)
            if embedder == "voiceid"
            else MODEL_VERSION
        )
        salt = f"{version}|{embedder}|{FrontEndConfig.from_settings(settings)!r}"
        return cls(settings.data_dir / "cache" / "embeddings" if enabled else None, salt)

    def _path(self, data: bytes, content_type: str) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(self.salt.encode() + content_type.encode() + data).hexdigest()
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, data: bytes, content_type: str) -> FloatArray | None:
        path = self._path(data, content_type)
        if path is not None and path.is_file():
            vector: FloatArray = np.load(path).astype(np.float32)
            return vector
        return None

    def get_speech(self, data: bytes, content_type: str) -> float | None:
        path = self._path(data, content_type)
        if path is not None and path.with_suffix(".speech").is_file():
            return float(path.with_suffix(".speech").read_text())
        return None

    def put_speech(self, data: bytes, content_type: str, seconds: float) -> None:
        path = self._path(data, content_type)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.speech")
            tmp.write_text(repr(float(seconds)))
            tmp.replace(path.with_suffix(".speech"))

    def put(self, data: bytes, content_type: str, vector: FloatArray) -> None:
        path = self._path(data, content_type)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own per writer: two evaluations may embed the same file at once.
            tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npy")
            np.save(tmp, vector)
            tmp.replace(path)


def embed_utterances(
    utterances: list[Utterance],
    channel: str,
    embed: EmbedFn,
    cache: EmbeddingCache,
    progress: Progress = lambda it: it,
) -> tuple[dict[str, FloatArray], dict[str, str]]:
    """utt_id -> embedding, and utt_id -> error code for utterances the front end refused."""
    vectors: dict[str, FloatArray] = {}
    failures: dict[str, str] = {}
    for utt in progress(utterances):
        data, content_type = through_channel(utt.path, channel, utt.extra)
        cached = cache.get(data, content_type)
        if cached is not None:
            vectors[utt.utt_id] = cached
            continue
        try:
            vector = embed(data, content_type)
        except VoiceIdError as exc:
            failures[utt.utt_id] = str(exc.code)
            continue
        cache.put(data, content_type, vector)
        vectors[utt.utt_id] = vector
    return vectors, failures


def measure_utterances(
    utterances: list[Utterance],
    channel: str,
    speech: SpeechFn,
    cache: EmbeddingCache,
    progress: Progress = lambda it: it,
) -> dict[str, float]:
    """utt_id -> net speech (seconds) as the front end measures it, for quality-aware scoring."""
    out: dict[str, float] = {}
    for utt in progress(utterances):
        data, content_type = through_channel(utt.path, channel, utt.extra)
        cached = cache.get_speech(data, content_type)
        if cached is None:
            try:
                cached = speech(data, content_type)
            except VoiceIdError:
                continue
            cache.put_speech(data, content_type, cached)
        out[utt.utt_id] = cached
    return out


def voiceprints_of(protocol: Protocol, vectors: dict[str, FloatArray]) -> tuple[list[str], FloatArray]:
    speakers = [s for s in protocol.speakers if any(u.utt_id in vectors for u in protocol.enrolment[s])]
    prints = [
        build_voiceprint(np.stack([vectors[u.utt_id] for u in protocol.enrolment[s] if u.utt_id in vectors]))
        for s in speakers
    ]
    return speakers, np.stack(prints)


def claimed_voiceprints(
    protocol: Protocol, speakers: list[str], population: FloatArray, claim_vectors: dict[str, FloatArray] | None
) -> FloatArray:
    """The voiceprints the probes are scored against, row for row with `speakers`: built from
    `claim_vectors` (e.g. the G.711 view of each speaker's enrolment audio, as the service scores a
    phone call) where given, else the population's own voiceprints (which always form the cohort)."""
    if claim_vectors is None:
        return population
    rows = []
    for i, speaker in enumerate(speakers):
        views = [claim_vectors[u.utt_id] for u in protocol.enrolment[speaker] if u.utt_id in claim_vectors]
        rows.append(build_voiceprint(np.stack(views)) if views else population[i])
    return np.stack(rows)


def _probe_speech(speech: dict[str, float], tests: list[Utterance]) -> npt.NDArray[np.float64]:
    return np.array([speech.get(u.utt_id, np.nan) for u in tests], dtype=np.float64)


def score_protocol(
    protocol: Protocol,
    vectors: dict[str, FloatArray],
    scorer: Scorer | None = None,
    channel: str = WIDEBAND,
    speech: dict[str, float] | None = None,
    claim_vectors: dict[str, FloatArray] | None = None,
    claimed: FloatArray | None = None,
) -> TrialScores:
    """Every test utterance against every voiceprint, normalised with the shipped cohort. `claimed`:
    the voiceprints to score against instead, row for row with the protocol's speakers (adapted ones)."""
    speakers, voiceprints = voiceprints_of(protocol, vectors)
    voiceprints = claimed_voiceprints(protocol, speakers, voiceprints, claim_vectors) if claimed is None else claimed
    tests = [u for u in protocol.tests if u.utt_id in vectors]
    probe = np.stack([vectors[u.utt_id] for u in tests])
    scorer = scorer or Scorer("none", 0, {}, {})
    _, scores = scorer.score_matrix(probe, voiceprints, channel)
    is_target = np.array([[u.speaker_id == s for s in speakers] for u in tests])
    probe_s = _probe_speech(speech or {}, tests)
    return TrialScores(scores.astype(np.float32), is_target, [u.utt_id for u in tests], speakers, probe_s)


def score_population(
    protocol: Protocol,
    vectors: dict[str, FloatArray],
    scorer: Scorer,
    channel: str,
    speech: dict[str, float] | None = None,
    claim_vectors: dict[str, FloatArray] | None = None,
    view_cohort: bool = False,
    population_limit: int | None = None,
    claimed: FloatArray | None = None,
    rotation: int = 0,
) -> TrialScores:
    """Trials normalised as the service does it: against a fixed-size cohort of up to
    `scorer.cohort_size` other enrolled voiceprints (bottom-k by a hash of the speaker id),
    topped up from the shipped cohort. `population_limit` puts at most that many enrolled
    voiceprints in each cohort: the regime of a deployment with that many callers enrolled.

    The claimed speaker is never in their own cohort (as in the service), and neither is the
    test speaker's own voiceprint: in the field most impostors are not enrolled, and leaving their
    voiceprint in the cohort would flatter the figures. With `claim_vectors` the claimed voiceprint
    is built from them (`claimed_voiceprints`) while the cohort keeps the population's voiceprints,
    as the service's cohort holds each member's main voiceprint; with `view_cohort` the cohort's
    population members are those claimed voiceprints too (a cohort that serves phone views to phone
    calls, which the service does not do yet).

    `claimed` replaces the claimed voiceprints (row for row with the protocol's speakers) while the cohort
    stays as it is: the voiceprints adapted with accepted calls (bench/adaptation.py), which the service
    scores calls against but never puts in a cohort.

    With the scorer's norm "centre" each trial is centred on the mean of the enrolled members its
    cohort would hold (the shipped cohort plays no part), as `Scorer.score` does. `rotation` starts the
    sampling order that many members later: another draw of the callers a deployment of
    `population_limit` could have (`centring_draws`).
    """
    from voiceid.verify.cohort import sample_order
    from voiceid.verify.normalisation import centre_scores, normalise_scores, population_mean_sq

    speakers, voiceprints = voiceprints_of(protocol, vectors)
    tests = [u for u in protocol.tests if u.utt_id in vectors]
    probes = np.stack([vectors[u.utt_id] for u in tests])
    order = np.roll(sample_order(speakers), -rotation)
    rank = np.empty(len(speakers), dtype=np.int64)
    rank[order] = np.arange(len(speakers))
    index = {s: i for i, s in enumerate(speakers)}
    owner = np.array([index.get(u.speaker_id, -1) for u in tests])
    shipped = scorer.cohorts[channel]
    enrolled = claimed_voiceprints(protocol, speakers, voiceprints, claim_vectors)
    members = enrolled if view_cohort else voiceprints
    claimed = enrolled if claimed is None else claimed
    union = np.concatenate([members[order], shipped])  # population in sampling order, then shipped
    vp_vs_union = cosine_matrix(claimed, union)
    probe_vs_union = cosine_matrix(probes, union)
    raw = cosine_matrix(probes, claimed).astype(np.float64)
    scores = np.zeros((len(tests), len(speakers)), dtype=np.float32)
    n_pop, size = len(speakers), scorer.cohort_size
    limit = size if population_limit is None else min(size, population_limit)
    for j in range(len(speakers)):
        for o in np.unique(owner):
            rows = np.flatnonzero(owner == o)
            keep = np.ones(n_pop, dtype=bool)
            keep[rank[j]] = False
            if o >= 0:
                keep[rank[o]] = False
            taken = np.flatnonzero(keep)[:limit]
            if scorer.norm == "centre":
                scores[rows, j] = centre_scores(
                    raw[rows, j : j + 1],
                    vp_vs_union[j : j + 1, taken],
                    probe_vs_union[np.ix_(rows, taken)],
                    population_mean_sq(union[taken]),
                )[:, 0]
                continue
            members = np.concatenate([taken, n_pop + np.arange(min(len(shipped), max(0, size - len(taken))))])
            scores[rows, j] = normalise_scores(
                raw[rows, j : j + 1],
                vp_vs_union[j : j + 1, members],
                probe_vs_union[np.ix_(rows, members)],
                scorer.norm,
                scorer.top_n,
            )[:, 0]
    is_target = np.array([[u.speaker_id == s for s in speakers] for u in tests])
    probe_s = _probe_speech(speech or {}, tests)
    return TrialScores(scores, is_target, [u.utt_id for u in tests], speakers, probe_s)


# At most this many draws per centring regime: enough to average out which few callers a small
# deployment has, few enough that the fitted calibration's stored tails stay a few hundred kB.
MAX_REGIME_DRAWS = 4


def regime_draws(norm: str, n_speakers: int, population_limit: int | None) -> list[int]:
    """The rotations of the sampling order a regime is scored over. A centring regime: up to
    MAX_REGIME_DRAWS evenly spaced draws of `population_limit` members, disjoint where the speakers
    allow (a mean over a few members depends on which few: scored on one draw, a regime's calibration
    would learn that draw's mean). Other regimes: the one draw (AS-norm's cohort is topped up to its
    fixed size either way)."""
    if norm != "centre" or population_limit is None or population_limit <= 0 or population_limit >= n_speakers - 2:
        return [0]
    draws = min(MAX_REGIME_DRAWS, -(-n_speakers // population_limit))
    return [k * n_speakers // draws for k in range(draws)]


def pool_trials(parts: Sequence[TrialScores]) -> TrialScores:
    """The trials of several draws over the same speakers as one set (each probe once per draw)."""
    if len(parts) == 1:
        return parts[0]
    speech = [p.probe_speech_s for p in parts]
    return TrialScores(
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.is_target for p in parts]),
        [u for p in parts for u in p.test_ids],
        parts[0].speakers,
        None if any(v is None for v in speech) else np.concatenate([v for v in speech if v is not None]),
    )


def summarise(target: FloatArray, nontarget: FloatArray) -> dict[str, Any]:
    eer, eer_threshold = metrics.eer(target, nontarget)
    dcf2, _ = metrics.min_dcf(target, nontarget, 0.01)
    dcf3, _ = metrics.min_dcf(target, nontarget, 0.001)
    fnmr1, thr1 = metrics.fnmr_at_fmr(target, nontarget, 0.01)
    fnmr01, thr01 = metrics.fnmr_at_fmr(target, nontarget, 0.001)
    return {
        "eer": eer,
        "eer_threshold": eer_threshold,
        "min_dcf_0.01": dcf2,
        "min_dcf_0.001": dcf3,
        "fnmr_at_fmr_1pct": fnmr1,
        "threshold_at_fmr_1pct": thr1,
        "fnmr_at_fmr_0.1pct": fnmr01,
        "threshold_at_fmr_0.1pct": thr01,
        "min_cllr": metrics.min_cllr(target, nontarget),
        "n_target": len(target),
        "n_nontarget": len(nontarget),
    }


@dataclass(frozen=True)
class EvalRun:
    """An embedded evaluation: embeddings of the protocol and of the cohort, ready to score."""

    protocol: Protocol
    vectors: dict[str, FloatArray]
    failures: dict[str, str]
    cohort: FloatArray | None
    channel: str  # evaluation channel: clean, g711-ulaw, g711-alaw
    service_channel: str  # the service's name for it: phone or wideband
    speech: dict[str, float] = field(default_factory=dict)  # utt_id -> net speech (s)
    enrol_channel: str | None = None  # channel of the enrolment audio when it differs (--enrol-channel)
    # Enrolment embeddings the claimed voiceprint is built from instead (the service's phone view of
    # wideband enrolment audio, scored against phone calls); None: the voiceprint itself.
    claim_vectors: dict[str, FloatArray] | None = None
    view_cohort: bool = False  # the population cohort holds the claim voiceprints too (score_population)

    def scorer(
        self,
        norm: NormMethod,
        top_n: int,
        calibrations: dict[str, Calibration] | None = None,
        cohort_size: int = 1000,
    ) -> Scorer:
        cohorts = {self.service_channel: self.cohort} if self.cohort is not None else {}
        return Scorer(norm, top_n, cohorts, calibrations or {}, cohort_size)

    def trials(
        self,
        norm: NormMethod,
        top_n: int,
        cohort_source: str = "builtin",
        cohort_size: int = 1000,
        population_limit: int | None = None,
    ) -> TrialScores:
        scorer = self.scorer(norm, top_n, cohort_size=cohort_size)
        if cohort_source == "builtin" or norm == "none":
            return score_protocol(
                self.protocol, self.vectors, scorer, self.service_channel, self.speech, self.claim_vectors
            )
        if cohort_source != "population":
            raise ValueError(f"unknown cohort source {cohort_source!r}")
        return self.population_trials(scorer, population_limit=population_limit)

    def population_trials(
        self,
        scorer: Scorer,
        protocol: Protocol | None = None,
        population_limit: int | None = None,
        claimed: FloatArray | None = None,
    ) -> TrialScores:
        """`score_population` of `protocol` (default: the run's) over the draws its regime is scored on
        (`regime_draws`), pooled."""
        protocol = protocol or self.protocol
        return pool_trials(
            [
                score_population(
                    protocol,
                    self.vectors,
                    scorer,
                    self.service_channel,
                    self.speech,
                    self.claim_vectors,
                    self.view_cohort,
                    population_limit,
                    claimed,
                    rotation,
                )
                for rotation in regime_draws(scorer.norm, len(protocol.speakers), population_limit)
            ]
        )


def embed_run(
    protocol: Protocol,
    channel: str,
    embed: EmbedFn,
    cache: EmbeddingCache,
    cohort_utterances: list[Utterance] | None,
    progress: Progress = lambda it: it,
    speech: SpeechFn | None = None,
    enrol_channel: str | None = None,
    phone_view: bool = False,
) -> EvalRun:
    """Embed the protocol: probes (and the cohort) through `channel`, the enrolment audio through
    `enrol_channel` (default: the same). The service picks cohort and calibration by the probe's
    channel, so the run's `service_channel` is the probe's. With `phone_view`, a wideband enrolment
    scored against phone probes uses the voiceprint of its G.711 view, as the service does
    (`voiceid.enrolment.views`)."""
    import soundfile as sf

    enrol_channel = enrol_channel or channel
    enrolment = [u for utts in protocol.enrolment.values() for u in utts]
    vectors: dict[str, FloatArray] = {}
    failures: dict[str, str] = {}
    net_speech: dict[str, float] = {}
    for utterances, through in ((enrolment, enrol_channel), (protocol.tests, channel)):
        got, failed = embed_utterances(utterances, through, embed, cache, progress)
        vectors.update(got)
        failures.update(failed)
        if speech is not None:
            net_speech.update(measure_utterances(utterances, through, speech, cache, progress))
    cohort = None
    if cohort_utterances:
        cohort_vectors, _ = embed_utterances(cohort_utterances, channel, embed, cache, progress)
        cohort = np.stack(list(cohort_vectors.values()))
    rate = int(sf.info(str(protocol.tests[0].path)).samplerate)
    probe_channel = service_channel(channel, rate)
    claim_vectors = None
    if phone_view and service_channel(enrol_channel, rate) == WIDEBAND and probe_channel == PHONE:
        claim_vectors, _ = embed_utterances(enrolment, PHONE_VIEW_CHANNEL, embed, cache, progress)
    return EvalRun(
        protocol,
        vectors,
        failures,
        cohort,
        channel,
        probe_channel,
        net_speech,
        enrol_channel if enrol_channel != channel else None,
        claim_vectors,
        # The service serves phone calls the phone views of the cohort's members too
        # (population.CohortState.for_channel), so the evaluation normalises the same way.
        view_cohort=claim_vectors is not None,
    )


def cross_validated_cllr(trials: TrialScores) -> float:
    """Cllr of LLRs calibrated on the other half of the test speakers (2 folds, speaker-disjoint).

    An honest Cllr without a separate calibration set: no trial is calibrated by a map that saw it.
    """
    from voiceid.verify.calibration import fit_logistic

    test_speaker = np.array([trials.speakers[int(np.argmax(row))] if row.any() else "" for row in trials.is_target])
    speakers = sorted(set(test_speaker.tolist()))
    fold_of = {s: i % 2 for i, s in enumerate(speakers)}
    fold = np.array([fold_of[s] for s in test_speaker])
    llr = np.zeros_like(trials.scores, dtype=np.float64)
    for k in (0, 1):
        train, apply = fold != k, fold == k
        scores_train, target_train = trials.scores[train], trials.is_target[train]
        slope, offset = fit_logistic(scores_train[target_train], scores_train[~target_train])
        llr[apply] = slope * trials.scores[apply] + offset
    return metrics.cllr(llr[trials.is_target], llr[~trials.is_target])
