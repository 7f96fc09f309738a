"""Choose and fit the PAD back-end on dev_spoof, honestly: leave-one-attack-family-out.

    nice -n 10 python bench/pad_backend.py [--fit] [--channels clean,g711-ulaw]

Reads the raw AASIST outputs cached by bench/pad_cache.py and the ECAPA embeddings cached by the
embedding cache (computed here when missing). For each candidate feature set it holds out one attack
family at a time together with the bona fide of the sources that family's spoofs come from (so a
detector cannot win by recognising a recording condition it was trained on), fits on the rest (all
channels pooled: codec augmentation), and scores the held-out files on each channel. Prints, per
channel, the EER per held-out family and the pooled EER over all held-out scores, AASIST alone
first. `--fit` then fits the chosen candidate on everything and writes
voiceid/antispoof/data/cm_backend.json with its provenance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.backend import DEFAULT_BACKEND, FeatureGroup, features, fit_backend, save_backend
from voiceid.antispoof.countermeasure import CmOutput
from voiceid.antispoof.manifest import read_manifest
from voiceid.antispoof.metrics import apcer_at_bpcer, pad_eer
from voiceid.config import get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.embedders import voiceid_embedder
from voiceid.evaluation.pad import ATTACK_FAMILIES, CmCache, PadItem, read_pad_manifest
from voiceid.evaluation.protocol import Utterance
from voiceid.evaluation.runner import EmbeddingCache, embed_utterances

G = FeatureGroup
CANDIDATES: dict[str, tuple[tuple[FeatureGroup, ...], float]] = {
    "aasist (calibrated)": ((G.AASIST_SCORE,), 1e-3),
    "aasist + window spread": ((G.AASIST_SCORE, G.AASIST_SPREAD), 1e-2),
    "aasist embedding LR": ((G.AASIST_EMBEDDING,), 30.0),
    "aasist + ecapa (SASV) LR": ((G.AASIST_SCORE, G.ECAPA_EMBEDDING), 30.0),
    "aasist emb + ecapa LR": ((G.AASIST_EMBEDDING, G.ECAPA_EMBEDDING), 30.0),
}


def load(
    channels: Sequence[str], with_ecapa: bool
) -> tuple[list[PadItem], dict[str, dict[str, CmOutput]], dict[str, dict[str, Any]]]:
    settings = get_settings()
    items = read_pad_manifest(settings.dev_data_dir / "dev_spoof" / "manifest.csv")
    cache = CmCache(settings.data_dir / "cache" / "cm", read_manifest(settings.cm_model_dir).cache_key)
    cm: dict[str, dict[str, CmOutput]] = {}
    ecapa: dict[str, dict[str, Any]] = {}
    for channel in channels:
        cm[channel] = {}
        for item in items:
            data, _ = through_channel(item.path, channel)
            out = cache.get(data, channel)
            if out is not None:
                cm[channel][item.utt_id] = out
        ecapa[channel] = {}
        if with_ecapa:
            embed, _ = voiceid_embedder(settings)
            utts = [Utterance(i.utt_id, i.speaker_id, i.path) for i in items]
            ecapa[channel], _ = embed_utterances(utts, channel, embed, EmbeddingCache.for_embedder(settings, "voiceid"))
    return items, cm, ecapa


def matrix(
    groups: Sequence[FeatureGroup], items: Sequence[PadItem], cm: dict[str, CmOutput], ecapa: dict[str, Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[PadItem]]:
    rows, labels, kept = [], [], []
    for item in items:
        out = cm.get(item.utt_id)
        if out is None or (G.ECAPA_EMBEDDING in groups and item.utt_id not in ecapa):
            continue
        rows.append(features(groups, out.window_scores, out.embedding, ecapa.get(item.utt_id)))  # type: ignore[arg-type]
        labels.append(1 if item.is_bonafide else 0)
        kept.append(item)
    return np.array(rows), np.array(labels), kept


def held_out(items: Sequence[PadItem], family: str) -> set[str]:
    """The family's spoofs plus the bona fide of every source those spoofs come from."""
    spoofs = {i.utt_id for i in items if not i.is_bonafide and ATTACK_FAMILIES.get(i.attack_id) == family}
    sources = {i.source for i in items if i.utt_id in spoofs}
    return spoofs | {i.utt_id for i in items if i.is_bonafide and i.source in sources}


def lofo(
    groups: Sequence[FeatureGroup],
    l2: float,
    items: list[PadItem],
    cm: dict[str, dict[str, CmOutput]],
    ecapa: dict[str, dict[str, Any]],
    channels: Sequence[str],
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {c: {} for c in channels}
    pooled: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in channels}
    for family in sorted(set(ATTACK_FAMILIES.values())):
        test_ids = held_out(items, family)
        xs, ys = [], []
        for channel in channels:  # codec augmentation: train on every channel's version of a file
            x, y, kept = matrix(groups, items, cm[channel], ecapa[channel])
            mask = np.array([i.utt_id not in test_ids for i in kept])
            xs.append(x[mask])
            ys.append(y[mask])
        backend = fit_backend(groups, np.vstack(xs), np.concatenate(ys), l2, "lofo")
        for channel in channels:
            x, y, kept = matrix(groups, items, cm[channel], ecapa[channel])
            mask = np.array([i.utt_id in test_ids for i in kept])
            s = backend.llr(x[mask])
            b, p = s[y[mask] == 1], s[y[mask] == 0]
            out[channel][family] = pad_eer(b, p)[0]
            pooled[channel][0].extend(b)
            pooled[channel][1].extend(p)
    for channel in channels:
        b, p = np.array(pooled[channel][0]), np.array(pooled[channel][1])
        out[channel]["pooled"] = pad_eer(b, p)[0]
        out[channel]["apcer@bpcer5"] = apcer_at_bpcer(b, p, 0.05)[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--fit", default=None, help="candidate name to fit on everything and ship")
    parser.add_argument("--ecapa", action=argparse.BooleanOptionalAction, default=True, help="SASV candidates too")
    args = parser.parse_args()
    channels = args.channels.split(",")
    items, cm, ecapa = load(channels, args.ecapa)
    results = {}
    for name, (groups, l2) in CANDIDATES.items():
        if G.ECAPA_EMBEDDING in groups and not args.ecapa:
            continue
        results[name] = lofo(groups, l2, items, cm, ecapa, channels)
        for channel in channels:
            row = "  ".join(f"{k}={v * 100:5.1f}%" for k, v in results[name][channel].items())
            print(f"{name:28s} {channel:10s} {row}", flush=True)
    if args.fit:
        groups, l2 = CANDIDATES[args.fit]
        xs, ys = [], []
        for channel in channels:
            x, y, _ = matrix(groups, items, cm[channel], ecapa[channel])
            xs.append(x)
            ys.append(y)
        settings = get_settings()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        backend = fit_backend(
            groups,
            np.vstack(xs),
            np.concatenate(ys),
            l2,
            read_manifest(settings.cm_model_dir).version,
            provenance={
                "candidate": args.fit,
                "l2": l2,
                "trained_on": "dev_spoof (all 543 files), channels " + ", ".join(channels),
                "n_train": int(sum(len(y) for y in ys)),
                "leave_one_family_out": {
                    c: {k: round(v, 4) for k, v in results[args.fit][c].items()} for c in channels
                },
                "script": "bench/pad_backend.py --fit",
                "commit": commit,
            },
        )
        save_backend(backend, DEFAULT_BACKEND)
        print(json.dumps(backend.provenance, indent=1))


if __name__ == "__main__":
    main()
