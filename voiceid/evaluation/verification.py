"""Speaker-verification evaluation of a manifest: what `voiceid eval` reports, as functions the CLI
and the bench scripts share (the scripts used to copy the CLI's embedding set-up and second-chance
code).

- `Embedding`: the product's embedder, net-speech meter and embedding cache, built once and reused for
  every run of a script;
- `ManifestTrials`: a manifest's protocol and cohort, embedded through a channel as `voiceid eval` does;
- `extension_trials`: the trials of the second-chance probes of a run (each probe joined with the call's
  next utterance);
- `evaluate_verification`: the whole `voiceid eval` report (metrics, policy, second chance, plots).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from voiceid.config import Settings
from voiceid.evaluation import embedders
from voiceid.evaluation.channel import CHANNELS
from voiceid.evaluation.embedders import EMBEDDERS, EmbedFn, SpeechFn
from voiceid.evaluation.operating_point import operating_point, trial_llrs
from voiceid.evaluation.protocol import Protocol, Utterance, build_protocol, extend_tests, join_tests, read_manifest
from voiceid.evaluation.regimes import CALIBRATIONS, policy_by_calibration, regime_for, regime_trials
from voiceid.evaluation.runner import (
    EmbeddingCache,
    EvalRun,
    Progress,
    TrialScores,
    cross_validated_cllr,
    embed_run,
    summarise,
)
from voiceid.evaluation.second_chance import second_chance_of
from voiceid.models.files import MODEL_VERSION
from voiceid.models.registry import backend_model_version
from voiceid.verify.calibration import load_calibrations
from voiceid.verify.metrics import cllr as cllr_of
from voiceid.verify.normalisation import NORM_METHODS, NormMethod
from voiceid.verify.policy import BUILTIN_CALIBRATION, channel_regimes, thresholds_by_calibration

# (norm, top_n, cohort source, cohort size): how a run's trials are scored (`EvalRun.trials`).
TrialArgs = tuple[NormMethod, int, str, int]


class EvaluationInputError(ValueError):
    """A manifest, channel or option an evaluation cannot run with; the CLI shows it as a bad parameter."""


def check_channel(channel: str | None) -> None:
    if channel is not None and channel not in CHANNELS:
        raise EvaluationInputError(f"channel must be one of {', '.join(CHANNELS)}")


def default_cohort_manifest(settings: Settings) -> Path:
    return settings.dev_data_dir / "dev_cohort" / "manifest.csv"


@dataclass(frozen=True)
class Embedding:
    """An embedder with its net-speech meter and cache: what every run of an evaluation embeds with."""

    embed: EmbedFn
    speech: SpeechFn
    cache: EmbeddingCache
    model_version: str  # the version the embeddings belong to (the calibrations are matched on it)

    @classmethod
    def from_settings(cls, settings: Settings, embedder: str = "voiceid", cache: bool = True) -> Embedding:
        """`voiceid`: the product path on the configured backend; `speechbrain-bare`: the baseline."""
        if embedder not in EMBEDDERS:
            raise EvaluationInputError(f"embedder must be one of {', '.join(EMBEDDERS)}")
        # Through the module, so that a test can stand a fake embedder in for the network.
        if embedder == "voiceid":
            embed = embedders.voiceid_embedder(settings)[0]
            version = backend_model_version(settings.model_dir, settings.inference_backend)
        else:
            embed, version = embedders.speechbrain_bare_embedder(settings), MODEL_VERSION
        cache_store = EmbeddingCache.for_embedder(settings, embedder, cache)
        return cls(embed, embedders.speech_meter(settings), cache_store, version)

    def run(
        self,
        protocol: Protocol,
        channel: str,
        cohort: list[Utterance] | None,
        progress: Progress = lambda items: items,
        enrol_channel: str | None = None,
        phone_view: bool = False,
    ) -> EvalRun:
        return embed_run(
            protocol,
            channel,
            self.embed,
            self.cache,
            cohort,
            progress,
            speech=self.speech,
            enrol_channel=enrol_channel,
            phone_view=phone_view,
        )


def read_protocol(manifest: Path, enrol_utts: int) -> Protocol:
    try:
        return build_protocol(read_manifest(manifest), enrol_utts)
    except ValueError as exc:  # a manifest naming files that are not there: say so, no traceback
        raise EvaluationInputError(str(exc)) from None


def read_cohort(cohort_manifest: Path | None) -> list[Utterance] | None:
    try:
        return read_manifest(cohort_manifest) if cohort_manifest is not None else None
    except ValueError as exc:
        raise EvaluationInputError(str(exc)) from None


@dataclass(frozen=True)
class EvaluationSet:
    """A manifest's protocol, the impostor cohort and the embedder: what an evaluation script embeds
    its runs from, channel after channel and probe length after probe length."""

    manifest: Path
    base: Protocol
    cohort: list[Utterance] | None
    embedding: Embedding

    @classmethod
    def dev(cls, settings: Settings, manifest: Path | None = None, enrol_utts: int = 3) -> EvaluationSet:
        """The dev set (or `manifest`) with the dev cohort, on the product's embedder."""
        path = manifest or settings.dev_data_dir / "dev" / "manifest.csv"
        cohort = read_cohort(default_cohort_manifest(settings))
        return cls(path, read_protocol(path, enrol_utts), cohort, Embedding.from_settings(settings))

    def run(
        self, channel: str, probe_utts: int = 1, enrol_channel: str | None = None, phone_view: bool = False
    ) -> EvalRun:
        protocol = join_tests(self.base, probe_utts)
        return self.embedding.run(protocol, channel, self.cohort, enrol_channel=enrol_channel, phone_view=phone_view)


@dataclass(frozen=True)
class RunSpec:
    """Which manifest to embed, and how (the embedding options of `voiceid eval` and `calibrate`)."""

    manifest: Path
    channel: str = "clean"
    enrol_utts: int = 3
    cohort_manifest: Path | None = None
    probe_utts: int = 1
    enrol_channel: str | None = None  # channel of the enrolment audio (default: `channel`)
    phone_view: bool = False  # phone probes against the G.711 view of wideband enrolment audio


@dataclass(frozen=True)
class ManifestTrials:
    """A manifest read for an evaluation: its protocol (first `enrol_utts` utterances of each speaker
    enrolled) and the impostor cohort; read before any model loads, so a bad manifest fails fast."""

    spec: RunSpec
    base: Protocol
    cohort: list[Utterance] | None

    @classmethod
    def read(cls, spec: RunSpec) -> ManifestTrials:
        check_channel(spec.channel)
        check_channel(spec.enrol_channel)
        return cls(spec, read_protocol(spec.manifest, spec.enrol_utts), read_cohort(spec.cohort_manifest))

    def embed(
        self, embedding: Embedding, probe_utts: int | None = None, progress: Progress = lambda items: items
    ) -> EvalRun:
        """The protocol with probes of `probe_utts` joined utterances (default: the spec's) embedded."""
        protocol = join_tests(self.base, self.spec.probe_utts if probe_utts is None else probe_utts)
        spec = self.spec
        return embedding.run(protocol, spec.channel, self.cohort, progress, spec.enrol_channel, spec.phone_view)


def extension_trials(
    base: Protocol,
    probe_utts: int,
    run: EvalRun,
    embedding: Embedding,
    cohort: list[Utterance] | None,
    trial_args: TrialArgs,
    progress: Progress = lambda items: items,
) -> tuple[TrialScores, dict[str, str]]:
    """The trials of the second-chance probes of `run` (each `probe_utts` probe joined with the call's
    next utterance, `extend_tests`), embedded and scored like the first ones, and the map from each
    first probe to its extension."""
    extensions = extend_tests(base, probe_utts)
    extended = embedding.run(
        Protocol(base.enrolment, list(extensions.values())),
        run.channel,
        cohort,
        progress,
        run.enrol_channel,
        run.claim_vectors is not None,
    )
    # The same cohort as the first try (a run may serve the phone views to phone calls on purpose).
    extended = dataclasses.replace(extended, view_cohort=run.view_cohort)
    return extended.trials(*trial_args), {probe: ext.utt_id for probe, ext in extensions.items()}


def probe_speech(trials: TrialScores) -> npt.NDArray[np.float64]:
    """The net speech of each probe, which the policy decides by (every run embeds with a speech meter)."""
    if trials.probe_speech_s is None:
        raise ValueError("the trials were scored without the net speech of their probes")
    return trials.probe_speech_s


@dataclass(frozen=True)
class EvalOptions:
    """The options of `voiceid eval` (None: the service's setting)."""

    spec: RunSpec
    embedder: str = "voiceid"
    norm: str | None = None
    top_n: int | None = None
    cohort: str | None = None
    cohort_size: int | None = None
    calibration: str = "shipped"  # shipped | self | a calibration.json path
    population: int | None = None
    second_chance: bool = False
    second_chance_fmr: float | None = None
    plots: Path | None = None
    cache: bool = True


def evaluate_verification(
    settings: Settings,
    options: EvalOptions,
    progress: Callable[[str], Progress] = lambda _channel: lambda items: items,
) -> dict[str, Any]:
    """The report of `voiceid eval`: EER, minDCF, Cllr, and what the decision policy does with the
    calibration the service would use for this channel and norm (or `options.calibration`).
    `progress(channel)` wraps the utterances of each embedding pass (a progress bar)."""
    norm = cast(NormMethod, options.norm or settings.score_norm)
    if norm not in NORM_METHODS:
        raise EvaluationInputError(f"norm must be one of {', '.join(NORM_METHODS)}")
    top_n = options.top_n or settings.score_top_n
    cohort_source = options.cohort or settings.cohort_source
    if norm == "centre" and cohort_source != "population":
        # The shipped cohort is another population: centring needs the enrolled one.
        raise EvaluationInputError("--norm centre centres on the enrolled population: use --cohort population")
    size = options.cohort_size or settings.cohort_size
    cohort_manifest = (options.spec.cohort_manifest or default_cohort_manifest(settings)) if norm != "none" else None
    spec = dataclasses.replace(options.spec, cohort_manifest=cohort_manifest)
    manifest = ManifestTrials.read(spec)
    embedding = Embedding.from_settings(settings, options.embedder, options.cache)
    run = manifest.embed(embedding, progress=progress(spec.channel))
    trials = run.trials(norm, top_n, cohort_source, size)
    report: dict[str, Any] = {
        "manifest": str(spec.manifest),
        "channel": spec.channel,
        "enrol_channel": spec.enrol_channel or spec.channel,
        "phone_view_voiceprint": run.claim_vectors is not None,
        "service_channel": run.service_channel,
        "embedder": options.embedder,
        "norm": norm,
        "top_n": top_n if norm == "as-norm" else None,
        "cohort": cohort_source if norm != "none" else None,
        "cohort_size": size if norm != "none" and cohort_source == "population" else None,
        "builtin_cohort_size": None if run.cohort is None else len(run.cohort),
        "model_version": embedding.model_version,
        "inference_backend": str(settings.inference_backend) if options.embedder == "voiceid" else "torch",
        "enrol_utts": spec.enrol_utts,
        "probe_utts": spec.probe_utts,
        "n_speakers": len(trials.speakers),
        "n_failed_utterances": len(run.failures),
        "failed_utterances": run.failures,
        **summarise(trials.target, trials.nontarget),
    }
    if len(trials.speakers) < 20:
        report["warning"] = (
            f"only {len(trials.speakers)} speakers: error rates, Cllr and the policy figures are not reliable"
        )
    mode = options.calibration if options.calibration in CALIBRATIONS else "file"
    calibration_path = Path(options.calibration) if mode == "file" else settings.calibration_file or BUILTIN_CALIBRATION
    if mode == "file" and not calibration_path.is_file():
        raise EvaluationInputError(
            f"--calibration is shipped, self or a calibration.json file; {options.calibration} is none"
        )
    regimes = channel_regimes(
        [
            c
            for c in (load_calibrations(calibration_path) if calibration_path.is_file() else [])
            if c.channel == run.service_channel and c.model_version == report["model_version"]
        ],
        norm,
    )
    if regimes and options.embedder == "voiceid":
        regime = regime_for(regimes, settings, options.population)
        cal = regime.calibration
        if options.population is not None or cal.norm != norm:
            trials = regime_trials(run, regime, settings)  # the regime's own scores (raw or normalised)
        probe_s = probe_speech(trials)
        llr = trial_llrs(trials.scores, probe_s, cal)
        report["cllr"] = cllr_of(llr[trials.is_target], llr[~trials.is_target])
        report["cllr_calibration"] = str(calibration_path)
        report["population"] = options.population
        report["policy"] = {
            "target_fmr": settings.target_fmr,
            "target_fnmr": settings.target_fnmr,
            "calibration": cal.calibration_id,
            **operating_point(llr, trials.is_target, probe_s, regime.thresholds, settings.verify_min_speech_s),
        }
        if mode == "self":
            report["policy_by_calibration"] = policy_by_calibration(run, regime, settings)
        if options.second_chance:
            retry_pair = (
                None
                if options.second_chance_fmr is None
                else thresholds_by_calibration({cal.channel: [cal]}, options.second_chance_fmr, settings.target_fnmr)[
                    cal.calibration_id
                ]
            )
            second, extension_of = extension_trials(
                manifest.base,
                spec.probe_utts,
                run,
                embedding,
                manifest.cohort,
                (cast(NormMethod, cal.norm), top_n, cohort_source, size),
                progress(spec.channel),
            )
            report["second_chance"] = second_chance_of(
                trials, second, extension_of, cal, regime.thresholds, settings.verify_min_speech_s, retry_pair
            )
    else:
        if options.second_chance:
            raise EvaluationInputError("--second-chance needs a calibration for this channel and norm (a policy)")
        if mode == "file":
            raise EvaluationInputError(
                f"{options.calibration} has no {run.service_channel}/{norm} calibration for this model"
            )
        report["cllr"] = cross_validated_cllr(trials)
        report["cllr_calibration"] = "2-fold cross-validation by test speaker (no matching calibration: no policy)"
    if options.plots is not None:
        from voiceid.evaluation.plots import plot_det, plot_histogram  # matplotlib: only when plots are asked for

        options.plots.mkdir(parents=True, exist_ok=True)
        label = f"{options.embedder} {spec.channel} {norm}"
        stem = f"{options.embedder}_{spec.channel}_{norm}"
        report["plots"] = [
            str(plot_det({label: (trials.target, trials.nontarget)}, options.plots / f"det_{stem}.png", label)),
            str(plot_histogram(trials.target, trials.nontarget, options.plots / f"hist_{stem}.png", label)),
        ]
    return report


def summary_line(report: dict[str, Any]) -> str:
    """The one-line summary `voiceid eval` prints."""
    norm = report["norm"]
    cohort = f"/{report['cohort']}" if norm != "none" else ""
    return (
        f"{report['embedder']} {report['channel']} {norm}{cohort}: "
        f"EER {report['eer'] * 100:.2f} %  minDCF(0.01) {report['min_dcf_0.01']:.4f}  "
        f"minDCF(0.001) {report['min_dcf_0.001']:.4f}  FNMR@FMR1% {report['fnmr_at_fmr_1pct'] * 100:.2f} %  "
        f"Cllr {report['cllr']:.3f}  minCllr {report['min_cllr']:.3f}  "
        f"targets {report['n_target']}  non-targets {report['n_nontarget']}  failed {report['n_failed_utterances']}"
    )
