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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.detector import CmOutput, Countermeasure
from voiceid.antispoof.metrics import apcer_at, summarise_pad
from voiceid.audio.frontend import FrontEnd
from voiceid.config import Settings
from voiceid.evaluation.channel import through_channel

FloatArray = npt.NDArray[np.float32]
BONAFIDE = "bonafide"
SPOOF = "spoof"
DETECTORS = ("shipped", "aasist")


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
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
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
    """Raw CM outputs on disk, keyed by detector version, channel and the file's bytes."""

    def __init__(self, directory: Path | None, version: str) -> None:
        self.directory = None if directory is None else directory / version
        self.version = version

    def _path(self, data: bytes, channel: str) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(channel.encode() + b"|" + data).hexdigest()
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, data: bytes, channel: str) -> CmOutput | None:
        path = self._path(data, channel)
        if path is None or not path.is_file():
            return None
        with np.load(path) as z:
            embedding = z["embedding"].astype(np.float32) if "embedding" in z.files else None
            windows = tuple(float(v) for v in z["window_scores"])
        return CmOutput(float(np.mean(windows)), windows, embedding, self.version)

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


def score_items(
    items: Sequence[PadItem],
    channel: str,
    cm: Countermeasure,
    front_end: FrontEnd,
    cache: CmCache,
    progress: Callable[[Iterable[PadItem]], Iterable[PadItem]] = lambda x: x,
) -> dict[str, CmOutput]:
    """Raw CM output of every item as it would arrive over `channel` (decoded like the API does)."""
    out: dict[str, CmOutput] = {}
    for item in progress(items):
        data, content_type = through_channel(item.path, channel)
        cached = cache.get(data, channel)
        if cached is None:
            decoded = front_end.decode(data, content_type)
            cached = cm.score(decoded.samples, decoded.sample_rate)
            cache.put(data, channel, cached)
        out[item.utt_id] = cached
    return out


def pad_report(items: Sequence[PadItem], scores: dict[str, float]) -> dict[str, Any]:
    """Pooled, per-attack and per-source PAD figures for `scores` (higher = bona fide) (pure).

    Per attack: that attack's APCER at the pooled thresholds (ISO per-species APCER) and its EER
    against all bona fide. Per source: that source's spoofs against that source's own bona fide,
    which separates detecting the attack from detecting the recording conditions."""
    bona = np.array([scores[i.utt_id] for i in items if i.is_bonafide and i.utt_id in scores])
    spoof = np.array([scores[i.utt_id] for i in items if not i.is_bonafide and i.utt_id in scores])
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


def service_channel(channel: str) -> str:
    """The service's channel name for an evaluation channel (which PAD threshold applies)."""
    return "wideband" if channel == "clean" else "phone"


@dataclass(frozen=True)
class PadRun:
    """Everything `eval-pad` and `calibrate-pad` need for one manifest and channel."""

    items: list[PadItem]
    channel: str
    outputs: dict[str, CmOutput]
    scores: dict[str, float]  # the evaluated detector's score, higher = bona fide
    detector: str


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
    cm = load_countermeasure(settings.cm_model_dir, settings.torch_threads, settings.cm_max_windows)
    cache = CmCache(settings.data_dir / "cache" / "cm" if cache_enabled else None, cm.manifest.cache_key)
    front_end = FrontEnd(FrontEndConfig.from_settings(settings))
    outputs = score_items(items, channel, cm, front_end, cache, progress)
    if detector == "aasist":
        return PadRun(items, channel, outputs, {k: v.score for k, v in outputs.items()}, detector)
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
    return PadRun(items, channel, outputs, scores, f"{detector}:{scorer.version}")
