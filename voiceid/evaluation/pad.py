"""`voiceid eval-pad`: score a dev_spoof-style manifest through a phone channel and report PAD metrics.

Every file goes through the same channel simulation and decoder as `voiceid eval` (and the API), then
through the countermeasure. Raw CM outputs are cached on disk under the data dir, keyed by the
detector version, the channel and the file bytes, because AASIST costs about a second per 4-s window
on one CPU core.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.countermeasure import CmOutput, Countermeasure
from voiceid.antispoof.metrics import apcer_at, summarise_pad, threshold_at_bpcer
from voiceid.antispoof.policy import PadThresholds
from voiceid.audio.frontend import FrontEnd
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.evaluation.channel import through_channel

FloatArray = npt.NDArray[np.float32]
BONAFIDE = "bonafide"
SPOOF = "spoof"
DETECTORS = ("shipped", "aasist")
# dev_spoof's attacks (manifest `attack_id`) by family, the unit the leave-one-family-out and
# unseen-family tables hold out (docs/antispoof.md)
ATTACK_FAMILIES = {
    "asvspoof2019_la": "asvspoof2019",
    "asv19la_adversarial_filter": "asvspoof2019",
    "cyclegan_vc2": "voice_conversion",
    "maskcyclegan_vc": "voice_conversion",
    "tortoise": "tts_cloning",
    "naturalspeech": "tts_cloning",
}


@dataclass(frozen=True)
class PadItem:
    utt_id: str
    label: str  # bonafide | spoof
    attack_id: str
    speaker_id: str
    path: Path
    source: str  # where the file came from; spoofs are compared with bona fide of the same source

    @property
    def is_bonafide(self) -> bool:
        return self.label == BONAFIDE


def sources_of(repos: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Group files by origin (pure): the source repository without its commit. Where a repository holds
    no bona fide at all, every repository of its owner is grouped as one source, so that its spoofs
    still have bona fide of the same origin to be compared with (e.g. ASVspoof 2019 LA samples spread
    over several eurecom-asp repositories)."""
    names = [r.split("@", 1)[0] for r in repos]
    with_bonafide = {n for n, lab in zip(names, labels, strict=True) if lab == BONAFIDE}
    pooled_owners = {n.split("/", 1)[0] for n in names if n not in with_bonafide}
    return [n.split("/", 1)[0] if n.split("/", 1)[0] in pooled_owners else n for n in names]


def read_pad_manifest(manifest: Path) -> list[PadItem]:
    """A dev_spoof-style manifest (label, attack_id, source_repo), or a speaker-verification manifest
    (dev, dev_cohort, dev_8k: no label column), whose rows are all genuine speech: bona fide, grouped
    by their `source` column under the manifest's directory name. Paths may be absolute."""
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        fields = reader.fieldnames or []
    if "label" not in fields:
        return [
            PadItem(
                utt_id=row["utt_id"],
                label=BONAFIDE,
                attack_id=BONAFIDE,
                speaker_id=row["speaker_id"],
                path=(manifest.parent / row["path"]).resolve(),
                source=f"{manifest.parent.name}/{row.get('source') or 'unknown'}",
            )
            for row in rows
        ]
    for row in rows:
        if row["label"] not in (BONAFIDE, SPOOF):
            raise ValueError(f"{manifest}: label must be bonafide or spoof, got {row['label']!r}")
    sources = sources_of([r.get("source_repo") or "unknown" for r in rows], [r["label"] for r in rows])
    return [
        PadItem(
            utt_id=row["utt_id"],
            label=row["label"],
            attack_id=row["attack_id"],
            speaker_id=row["speaker_id"],
            path=(manifest.parent / row["path"]).resolve(),
            source=source,
        )
        for row, source in zip(rows, sources, strict=True)
    ]


class CmCache:
    """Raw CM outputs on disk, keyed by detector version, channel and the file's bytes.

    `wider` names caches of the same detector with a larger window cap: with a cap of 1 or 2 a call's
    windows are the first (and last) of any larger cap's evenly spaced windows, so its output is
    derived from theirs instead of running the model again (the shared machine's CPU is scarce)."""

    def __init__(
        self, directory: Path | None, version: str, max_windows: int | None = None, wider: Sequence[str] = ()
    ) -> None:
        self.root = directory
        self.directory = None if directory is None else directory / version
        self.version = version
        self.max_windows = max_windows
        self.wider = tuple(wider) if max_windows in (1, 2) else ()

    def _path(self, data: bytes, channel: str, version: str | None = None) -> Path | None:
        if self.root is None:
            return None
        key = hashlib.sha256(channel.encode() + b"|" + data).hexdigest()
        return self.root / (version or self.version) / key[:2] / f"{key}.npz"

    def get(self, data: bytes, channel: str) -> CmOutput | None:
        for version in (self.version, *self.wider):
            path = self._path(data, channel, version)
            if path is None or not path.is_file():
                continue
            with np.load(path) as z:
                embedding = z["embedding"].astype(np.float32) if "embedding" in z.files else None
                windows = tuple(float(v) for v in z["window_scores"])
            if version != self.version and self.max_windows is not None and len(windows) > self.max_windows:
                # first window (cap 1) or first and last (cap 2); the mean embedding cannot be derived
                windows = windows[:1] if self.max_windows == 1 else (windows[0], windows[-1])
                embedding = None
            return CmOutput(float(np.mean(windows)), windows, embedding, self.version)
        return None

    def put(self, data: bytes, channel: str, output: CmOutput) -> None:
        path = self._path(data, channel)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npz")
        arrays: dict[str, Any] = {"window_scores": np.asarray(output.window_scores, dtype=np.float32)}
        if output.embedding is not None:
            arrays["embedding"] = output.embedding
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
        tmp.replace(path)


_TOO_BIG = frozenset({ErrorCode.AUDIO_TOO_LONG, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.DECODED_AUDIO_TOO_LARGE})


@dataclass(frozen=True)
class ItemProblem:
    """A file the evaluation could not score as it is: truncated to what the service accepts, or skipped."""

    utt_id: str
    action: str  # "truncated" | "skipped"
    code: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"utt_id": self.utt_id, "action": self.action, "code": self.code, "detail": self.detail}


def _head_through_channel(path: Path, channel: str, seconds: float) -> tuple[bytes, str]:
    """The first `seconds` of `path` as it would arrive over `channel` (the part a stream would hear
    before the service's length limit)."""
    import tempfile

    import soundfile as sf

    info = sf.info(str(path))
    samples, rate = sf.read(str(path), frames=int(seconds * info.samplerate) - 1, dtype="float32", always_2d=True)
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.wav"
        sf.write(str(head), samples, rate, subtype="PCM_16")
        data, content_type = through_channel(head, channel)
    return data, content_type


def score_items(
    items: Sequence[PadItem],
    channel: str,
    cm: Countermeasure,
    front_end: FrontEnd,
    cache: CmCache,
    progress: Callable[[Iterable[PadItem]], Iterable[PadItem]] = lambda x: x,
    problems: list[ItemProblem] | None = None,
) -> dict[str, CmOutput]:
    """Raw CM output of every item as it would arrive over `channel` (decoded like the API does).

    One file never ends a run: audio longer than the service accepts is scored on its first
    `max_audio_s` seconds, audio that cannot be decoded at all is skipped; both are appended to
    `problems` (or raised when no list is given)."""
    out: dict[str, CmOutput] = {}
    for item in progress(items):
        try:
            data, content_type = through_channel(item.path, channel)
            cached = cache.get(data, channel)
            if cached is None:
                try:
                    decoded = front_end.decode(data, content_type)
                except VoiceIdError as exc:
                    if exc.code not in _TOO_BIG or problems is None:
                        raise
                    data, content_type = _head_through_channel(item.path, channel, front_end.config.limits.max_seconds)
                    problems.append(ItemProblem(item.utt_id, "truncated", str(exc.code), exc.message))
                    cached = cache.get(data, channel)
                    decoded = front_end.decode(data, content_type)
                if cached is None:
                    cached = cm.score(decoded.samples, decoded.sample_rate)
                    cache.put(data, channel, cached)
        except (VoiceIdError, OSError, ValueError, RuntimeError) as exc:
            if problems is None:
                raise
            code = str(exc.code) if isinstance(exc, VoiceIdError) else type(exc).__name__
            problems.append(ItemProblem(item.utt_id, "skipped", code, str(exc)[:200]))
            continue
        out[item.utt_id] = cached
    return out


def pad_report(items: Sequence[PadItem], scores: dict[str, float]) -> dict[str, Any]:
    """Pooled, per-attack and per-source PAD figures for `scores` (higher = bona fide) (pure).

    Per attack: that attack's APCER at the pooled thresholds (ISO per-species APCER) and its EER
    against all bona fide. Per source: that source's spoofs against that source's own bona fide,
    which separates detecting the attack from detecting the recording conditions. A manifest of bona
    fide only (genuine callers' speech) has no EER and no APCER: those are null."""
    bona = np.array([scores[i.utt_id] for i in items if i.is_bonafide and i.utt_id in scores])
    spoof = np.array([scores[i.utt_id] for i in items if not i.is_bonafide and i.utt_id in scores])
    if len(bona) == 0 or len(spoof) == 0:
        return {
            "n_bonafide": len(bona),
            "n_spoof": len(spoof),
            "eer": None,
            "eer_threshold": None,
            "apcer_at_bpcer_1pct": None,
            "apcer_at_bpcer_5pct": None,
            "threshold_bpcer_1pct": None if len(bona) == 0 else round(threshold_at_bpcer(bona, 0.01), 4),
            "threshold_bpcer_5pct": None if len(bona) == 0 else round(threshold_at_bpcer(bona, 0.05), 4),
            "per_attack": {},
            "apcer_max_at_bpcer_5pct": None,
            "per_source": {},
        }
    pooled = summarise_pad(bona, spoof)
    report: dict[str, Any] = pooled.to_dict()
    by_attack: dict[str, list[float]] = defaultdict(list)
    for item in items:
        if not item.is_bonafide and item.utt_id in scores:
            by_attack[item.attack_id].append(scores[item.utt_id])
    per_attack: dict[str, Any] = {}
    for attack, values in sorted(by_attack.items()):
        arr = np.array(values)
        per_attack[attack] = {
            "n_spoof": len(values),
            "eer": round(summarise_pad(bona, arr).eer, 4),
            "apcer_at_bpcer_1pct": round(apcer_at(arr, pooled.threshold_bpcer_1pct), 4),
            "apcer_at_bpcer_5pct": round(apcer_at(arr, pooled.threshold_bpcer_5pct), 4),
        }
    report["per_attack"] = per_attack
    report["apcer_max_at_bpcer_5pct"] = max((v["apcer_at_bpcer_5pct"] for v in per_attack.values()), default=0.0)
    per_source: dict[str, Any] = {}
    for source in sorted({i.source for i in items}):
        b = np.array([scores[i.utt_id] for i in items if i.source == source and i.is_bonafide and i.utt_id in scores])
        s = np.array(
            [scores[i.utt_id] for i in items if i.source == source and not i.is_bonafide and i.utt_id in scores]
        )
        if len(b) and len(s):
            per_source[source] = summarise_pad(b, s).to_dict()
    report["per_source"] = per_source
    return report


def at_thresholds(
    items: Sequence[PadItem], scores: dict[str, float], channels: dict[str, str], thresholds: PadThresholds
) -> dict[str, Any]:
    """BPCER and APCER at fixed (shipped) thresholds, each file judged by the threshold of the channel
    it arrived on, pooled, per bona fide source and per attack (pure). `apcer` is null without spoofs,
    `bpcer` null without bona fide."""
    flagged = {u: thresholds.flagged(v, channels[u]) for u, v in scores.items()}
    bona = [flagged[i.utt_id] for i in items if i.is_bonafide and i.utt_id in flagged]
    spoof = [not flagged[i.utt_id] for i in items if not i.is_bonafide and i.utt_id in flagged]
    by_source: dict[str, list[bool]] = defaultdict(list)
    by_attack: dict[str, list[bool]] = defaultdict(list)
    for i in items:
        if i.utt_id in flagged:
            if i.is_bonafide:
                by_source[i.source].append(flagged[i.utt_id])
            else:
                by_attack[i.attack_id].append(not flagged[i.utt_id])
    return {
        "bpcer": round(float(np.mean(bona)), 4) if bona else None,
        "apcer": round(float(np.mean(spoof)), 4) if spoof else None,
        "n_bonafide": len(bona),
        "n_spoof": len(spoof),
        "thresholds": {c: round(thresholds.threshold(c), 4) for c in sorted(set(channels.values()))},
        "bpcer_per_source": {
            k: {"bpcer": round(float(np.mean(v)), 4), "n": len(v)} for k, v in sorted(by_source.items())
        },
        "apcer_per_attack": {
            k: {"apcer": round(float(np.mean(v)), 4), "n": len(v)} for k, v in sorted(by_attack.items())
        },
    }


def service_channel(channel: str) -> str:
    """The service's channel name for an evaluation channel (which PAD threshold applies)."""
    return "wideband" if channel == "clean" else "phone"


def arrival_channel(path: Path, channel: str) -> str:
    """The service channel a file lands on over `channel`, as the front end decides it: G.711 and
    anything recorded at 8 kHz or less (native narrowband, such as dev_8k) is `phone`."""
    if channel != "clean":
        return "phone"
    import soundfile as sf

    info = sf.info(str(path))
    narrow = info.samplerate <= 8000 or any(law in info.subtype for law in ("ULAW", "ALAW"))
    return "phone" if narrow else "wideband"


@dataclass(frozen=True)
class PadRun:
    """Everything `eval-pad` and `calibrate-pad` need for one manifest and channel."""

    items: list[PadItem]
    channel: str
    outputs: dict[str, CmOutput]
    scores: dict[str, float]  # the evaluated detector's score, higher = bona fide
    detector: str
    channels: dict[str, str] = field(default_factory=dict)  # service channel (phone | wideband) per file
    problems: list[ItemProblem] = field(default_factory=list)  # files truncated or skipped


def run_pad(
    manifest: Path,
    channel: str,
    detector: str,
    settings: Settings,
    cache_enabled: bool = True,
    progress: Callable[[Iterable[PadItem]], Iterable[PadItem]] = lambda x: x,
) -> PadRun:
    """Score `manifest` over `channel` with the raw detector (`aasist`: the model's own score) or the
    shipped detector (`shipped`: model + fitted back-end, the score the service logs)."""
    from voiceid.antispoof.backend import FeatureGroup, load_backend
    from voiceid.antispoof.detector import load_countermeasure
    from voiceid.antispoof.stage import CmScorer
    from voiceid.audio.frontend import FrontEndConfig

    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}")
    items = read_pad_manifest(manifest)
    cm = load_countermeasure(
        settings.cm_model_dir, settings.torch_threads, settings.cm_max_windows, settings.cm_runtime
    )
    # a runtime's own suffix (bf16) on the manifest's key, kept for the wider caches too
    suffix = cm.cache_key.removeprefix(cm.manifest.cache_key)
    wider = [
        replace(cm.manifest, max_windows=w).cache_key + suffix for w in (4, 8, 16, 32) if w > cm.manifest.max_windows
    ]
    cache = CmCache(
        settings.data_dir / "cache" / "cm" if cache_enabled else None,
        cm.cache_key,
        cm.manifest.max_windows,
        wider,
    )
    front_end = FrontEnd(FrontEndConfig.from_settings(settings))
    problems: list[ItemProblem] = []
    outputs = score_items(items, channel, cm, front_end, cache, progress, problems)
    channels = {i.utt_id: arrival_channel(i.path, channel) for i in items if i.utt_id in outputs}
    if detector == "aasist":
        scores = {k: v.score for k, v in outputs.items()}
        return PadRun(items, channel, outputs, scores, detector, channels, problems)
    scorer = CmScorer(cm, load_backend(settings.cm_backend_file))
    vectors: dict[str, FloatArray] = {}
    if FeatureGroup.ECAPA_EMBEDDING in scorer.backend.groups:
        from voiceid.evaluation.embedders import voiceid_embedder
        from voiceid.evaluation.protocol import Utterance
        from voiceid.evaluation.runner import EmbeddingCache, embed_utterances

        embed, _ = voiceid_embedder(settings)
        utts = [Utterance(i.utt_id, i.speaker_id, i.path) for i in items]
        vectors, _ = embed_utterances(
            utts, channel, embed, EmbeddingCache.for_embedder(settings, "voiceid", cache_enabled)
        )
    scores = {
        utt: scorer.calibrate(out, vectors.get(utt))
        for utt, out in outputs.items()
        if FeatureGroup.ECAPA_EMBEDDING not in scorer.backend.groups or utt in vectors
    }
    return PadRun(items, channel, outputs, scores, f"{detector}:{scorer.version}", channels, problems)


@dataclass(frozen=True)
class PadEvaluation:
    report: dict[str, Any]
    run: PadRun


def evaluate_pad(
    settings: Settings,
    manifest: Path,
    channel: str,
    detector: str,
    cache: bool = True,
    plot: Path | None = None,
) -> PadEvaluation:
    """The report of `voiceid eval-pad`: EER, APCER at BPCER 1 % / 5 %, per attack and per source, and
    what the shipped thresholds do (the shipped detector only); a DET plot when `plot` is given."""
    from voiceid.antispoof.policy import load_thresholds
    from voiceid.evaluation.channel import CHANNELS

    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}")
    run = run_pad(manifest, channel, detector, settings, cache)
    thresholds = load_thresholds(settings.cm_thresholds_file)
    report: dict[str, Any] = {
        "manifest": str(manifest),
        "channel": channel,
        "detector": run.detector,
        "score": "higher = more likely bona fide; flagged as an attack below the threshold",
        **pad_report(run.items, run.scores),
    }
    # The shipped thresholds hold for the shipped detector's scores only (the raw AASIST score is on
    # another scale), each file judged by the threshold of the channel it arrives on.
    report["at_shipped_thresholds"] = (
        at_thresholds(run.items, run.scores, run.channels, thresholds) if detector == "shipped" else None
    )
    report["problems"] = [p.to_dict() for p in run.problems]
    if plot is not None:
        from voiceid.evaluation.plots import plot_det  # matplotlib: only when a plot is asked for

        bona = np.array([run.scores[i.utt_id] for i in run.items if i.is_bonafide and i.utt_id in run.scores])
        spoof = np.array([run.scores[i.utt_id] for i in run.items if not i.is_bonafide and i.utt_id in run.scores])
        if len(bona) == 0 or len(spoof) == 0:
            raise ValueError("a DET plot needs both bona fide and spoof rows")
        plot.parent.mkdir(parents=True, exist_ok=True)
        label = f"{detector} {channel}"
        report["det_plot"] = str(plot_det({label: (bona, spoof)}, plot, label, ("APCER (%)", "BPCER (%)")))
    return PadEvaluation(report, run)


def pad_summary_line(report: dict[str, Any], run: PadRun) -> str:
    """The one-line summary `voiceid eval-pad` prints."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f} %"

    shipped = report["at_shipped_thresholds"] or {}
    return (
        f"{run.detector} {run.channel}: EER {pct(report['eer'])}  "
        f"APCER@BPCER1% {pct(report['apcer_at_bpcer_1pct'])}  "
        f"APCER@BPCER5% {pct(report['apcer_at_bpcer_5pct'])}  bona fide {report['n_bonafide']}  "
        f"spoof {report['n_spoof']}; at the shipped thresholds BPCER {pct(shipped.get('bpcer'))} "
        f"APCER {pct(shipped.get('apcer'))}; {len(run.problems)} file(s) truncated or skipped"
    )


@dataclass(frozen=True)
class PadThresholdFit:
    thresholds: PadThresholds
    report: dict[str, Any]  # thresholds, BPCER per source (fit and held out), APCER per attack, problems
    per_source: dict[str, Any]


def fit_pad_thresholds(
    settings: Settings,
    manifests: Sequence[Path],
    channels: Sequence[str],
    target_bpcer: float,
    holdout_share: float,
) -> PadThresholdFit:
    """What `voiceid calibrate-pad` fits: the countermeasure thresholds per service channel for a
    target BPCER on the bona fide files of every manifest sent through every channel, with the BPCER
    per data source on fitted and held-out speakers and the APCER the manifests' attacks meet."""
    from voiceid.antispoof.calibration import BonafideScore, fit_thresholds
    from voiceid.evaluation.channel import CHANNELS

    for name in channels:
        if name not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    scores: list[BonafideScore] = []
    runs: list[tuple[Path, PadRun]] = []
    backend_id = ""
    problems: list[dict[str, str]] = []
    for path in manifests:
        for name in channels:
            run = run_pad(path, name, "shipped", settings)
            runs.append((path, run))
            backend_id = run.detector.split(":", 1)[1]
            problems += [{"manifest": str(path), "channel": name, **p.to_dict()} for p in run.problems]
            scores += [
                BonafideScore(
                    f"{path}|{name}|{i.utt_id}",
                    i.speaker_id,
                    i.source,
                    name,
                    run.channels[i.utt_id],
                    run.scores[i.utt_id],
                )
                for i in run.items
                if i.is_bonafide and i.utt_id in run.scores
            ]
    if not scores:
        raise ValueError("the manifests hold no bona fide file that could be scored")
    thresholds, fit_report = fit_thresholds(scores, backend_id, target_bpcer, holdout_share)
    # Attacks in the manifests (dev_spoof) are not used for the fit; the APCER they meet is reported.
    attacks = {
        f"{path.parent.name} [{run.channel}]": at_thresholds(run.items, run.scores, run.channels, thresholds)[
            "apcer_per_attack"
        ]
        for path, run in runs
        if any(not i.is_bonafide for i in run.items)
    }
    full = {"thresholds": thresholds.to_dict(), **fit_report, "apcer_per_attack": attacks, "problems": problems}
    return PadThresholdFit(thresholds, full, fit_report["per_source"])
