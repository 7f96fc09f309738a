"""`voiceid eval`: embed a manifest through a channel, score the trials, report the metrics."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings
from voiceid.errors import VoiceIdError
from voiceid.evaluation import metrics
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.embedders import EmbedFn
from voiceid.evaluation.protocol import Protocol, Utterance
from voiceid.verify.calibration import Calibration
from voiceid.verify.cohort import WIDEBAND, service_channel
from voiceid.verify.normalisation import NormMethod
from voiceid.verify.scorer import CohortScores, Scorer
from voiceid.verify.scoring import build_voiceprint, cosine_matrix

FloatArray = npt.NDArray[np.float32]
Progress = Callable[[Iterable[Utterance]], Iterable[Utterance]]


@dataclass(frozen=True)
class TrialScores:
    scores: FloatArray  # (n_tests, n_speakers)
    is_target: npt.NDArray[np.bool_]  # same shape
    test_ids: list[str]
    speakers: list[str]

    @property
    def target(self) -> FloatArray:
        return self.scores[self.is_target]

    @property
    def nontarget(self) -> FloatArray:
        return self.scores[~self.is_target]


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
        from voiceid.models.embedder import backend_model_version
        from voiceid.models.files import MODEL_VERSION

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
        data, content_type = through_channel(utt.path, channel)
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


def voiceprints_of(protocol: Protocol, vectors: dict[str, FloatArray]) -> tuple[list[str], FloatArray]:
    speakers = [s for s in protocol.speakers if any(u.utt_id in vectors for u in protocol.enrolment[s])]
    prints = [
        build_voiceprint(np.stack([vectors[u.utt_id] for u in protocol.enrolment[s] if u.utt_id in vectors]))
        for s in speakers
    ]
    return speakers, np.stack(prints)


def score_protocol(
    protocol: Protocol, vectors: dict[str, FloatArray], scorer: Scorer | None = None, channel: str = WIDEBAND
) -> TrialScores:
    """Every test utterance against every voiceprint, through the service's scorer."""
    speakers, voiceprints = voiceprints_of(protocol, vectors)
    tests = [u for u in protocol.tests if u.utt_id in vectors]
    probe = np.stack([vectors[u.utt_id] for u in tests])
    scorer = scorer or Scorer("none", 0, {}, {})
    _, scores = scorer.score_matrix(probe, voiceprints, channel)
    is_target = np.array([[u.speaker_id == s for s in speakers] for u in tests])
    return TrialScores(scores.astype(np.float32), is_target, [u.utt_id for u in tests], speakers)


def score_population(protocol: Protocol, vectors: dict[str, FloatArray], scorer: Scorer, channel: str) -> TrialScores:
    """Trials normalised against the enrolled population, as the service does it.

    The cohort of a trial is every other enrolled voiceprint, less the claimed speaker (as in the
    service) and less the test speaker's own voiceprint: in the field most impostors are not
    enrolled, and leaving their own voiceprint in the cohort would flatter the figures.
    """
    speakers, voiceprints = voiceprints_of(protocol, vectors)
    tests = [u for u in protocol.tests if u.utt_id in vectors]
    probes = np.stack([vectors[u.utt_id] for u in tests])
    index = {s: i for i, s in enumerate(speakers)}
    owner = np.array([index.get(u.speaker_id, -1) for u in tests])
    vp_vs_vp = cosine_matrix(voiceprints, voiceprints)
    probe_vs_vp = cosine_matrix(probes, voiceprints)
    scores = np.zeros((len(tests), len(speakers)), dtype=np.float32)
    members = np.ones(len(speakers), dtype=bool)
    for j in range(len(speakers)):
        for i in range(len(tests)):
            members[:] = True
            members[j] = False
            if owner[i] >= 0:
                members[owner[i]] = False
            cohort = CohortScores(vp_vs_vp[j, members], probe_vs_vp[i, members], int(members.sum()))
            scores[i, j] = scorer.score(probes[i], voiceprints[j], channel, cohort).score
    is_target = np.array([[u.speaker_id == s for s in speakers] for u in tests])
    return TrialScores(scores, is_target, [u.utt_id for u in tests], speakers)


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

    def scorer(self, norm: NormMethod, top_n: int, calibrations: dict[str, Calibration] | None = None) -> Scorer:
        cohorts = {self.service_channel: self.cohort} if self.cohort is not None else {}
        return Scorer(norm, top_n, cohorts, calibrations or {})

    def trials(
        self, norm: NormMethod, top_n: int, cohort_source: str = "builtin", population_min: int = 0
    ) -> TrialScores:
        scorer = self.scorer(norm, top_n)
        if cohort_source == "builtin" or norm == "none":
            return score_protocol(self.protocol, self.vectors, scorer, self.service_channel)
        if cohort_source != "population":
            raise ValueError(f"unknown cohort source {cohort_source!r}")
        scorer.population_min = population_min
        return score_population(self.protocol, self.vectors, scorer, self.service_channel)


def embed_run(
    protocol: Protocol,
    channel: str,
    embed: EmbedFn,
    cache: EmbeddingCache,
    cohort_utterances: list[Utterance] | None,
    progress: Progress = lambda it: it,
) -> EvalRun:
    import soundfile as sf

    utterances = [u for utts in protocol.enrolment.values() for u in utts] + protocol.tests
    vectors, failures = embed_utterances(utterances, channel, embed, cache, progress)
    cohort = None
    if cohort_utterances:
        cohort_vectors, _ = embed_utterances(cohort_utterances, channel, embed, cache, progress)
        cohort = np.stack(list(cohort_vectors.values()))
    rate = int(sf.info(str(protocol.tests[0].path)).samplerate)
    return EvalRun(protocol, vectors, failures, cohort, channel, service_channel(channel, rate))


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
