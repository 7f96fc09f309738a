"""Raw-cosine distributions on the dev set (the fraud thresholds are now chosen on the calibrated LLR
scale by bench/fraud_screening.py; this script shows the raw material behind it).

    PYTHONPATH=. python bench/fraud_thresholds.py [--channel g711-ulaw]

Watchlist: an entry is one flagged utterance and a probe is one call, so the relevant scores are
single utterance vs single utterance (same speaker vs different speakers). Duplicates: a new
voiceprint against enrolled voiceprints, so voiceprint vs voiceprint, each built from disjoint
halves of a speaker's utterances (same speaker) or from different speakers. Embeddings come from
the `voiceid eval` cache when present, so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from voiceid.config import get_settings
from voiceid.evaluation.embedders import voiceid_embedder
from voiceid.evaluation.protocol import read_manifest
from voiceid.evaluation.runner import EmbeddingCache, embed_utterances
from voiceid.verify.vectors import build_voiceprint, l2_normalise


def describe(name: str, same: np.ndarray, diff: np.ndarray, thresholds: list[float]) -> None:
    print(f"\n{name}: {len(same)} same-speaker, {len(diff)} different-speaker pairs")
    for label, arr in (("same", same), ("diff", diff)):
        q = np.percentile(arr, [1, 5, 50, 95, 99, 99.9])
        print(f"  {label}: " + "  ".join(f"p{p}={v:.3f}" for p, v in zip((1, 5, 50, 95, 99, 99.9), q, strict=True)))
        print(f"        max={arr.max():.3f}" if label == "diff" else f"        min={arr.min():.3f}")
    print("  threshold  false-hit-rate (diff >= t)  miss-rate (same < t)")
    for t in thresholds:
        print(f"  {t:9.2f}  {np.mean(diff >= t):26.5f}  {np.mean(same < t):20.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", default="g711-ulaw", help="clean | g711-ulaw | g711-alaw")
    args = parser.parse_args()
    settings = get_settings()
    utterances = read_manifest(settings.dev_data_dir / "dev" / "manifest.csv")
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    embed = voiceid_embedder(settings)[0]
    vectors, failures = embed_utterances(utterances, args.channel, embed, cache)
    print(f"channel {args.channel}: {len(vectors)} utterances embedded, {len(failures)} refused", file=sys.stderr)

    kept = [u for u in utterances if u.utt_id in vectors]
    speakers = np.array([u.speaker_id for u in kept])
    x = l2_normalise(np.stack([vectors[u.utt_id] for u in kept]))
    scores = x @ x.T
    upper = np.triu(np.ones_like(scores, dtype=bool), k=1)
    same_mask = (speakers[:, None] == speakers[None, :]) & upper
    diff_mask = (speakers[:, None] != speakers[None, :]) & upper
    describe(
        "utterance vs utterance (watchlist)",
        scores[same_mask],
        scores[diff_mask],
        [0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75],
    )

    halves_a, halves_b = [], []
    for spk in sorted(set(speakers)):
        rows = x[speakers == spk]
        if len(rows) >= 4:
            half = len(rows) // 2
            halves_a.append(build_voiceprint(rows[:half]))
            halves_b.append(build_voiceprint(rows[half:]))
    a, b = np.stack(halves_a), np.stack(halves_b)
    cross = a @ b.T
    same_vp = np.diag(cross)
    diff_vp = np.concatenate([cross[~np.eye(len(a), dtype=bool)], (a @ a.T)[np.triu_indices(len(a), 1)]])
    describe("voiceprint vs voiceprint (duplicates)", same_vp, diff_vp, [0.6, 0.65, 0.7, 0.75, 0.8, 0.85])


if __name__ == "__main__":
    main()
