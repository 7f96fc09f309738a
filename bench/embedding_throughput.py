"""Embedding speed on the dev set: voiceid's pipeline next to bare SpeechBrain, same audio, same run.

Measures per utterance, single request at a time (what an API call costs):
- `voiceid full`: bytes -> decode -> 16 kHz -> Silero VAD -> ECAPA (Engine.embed_bytes)
- `voiceid embed`: ECAPA forward on the VAD output only
- `speechbrain bare`: EncoderClassifier.encode_batch on the whole decoded 16 kHz file
and the throughput of `Embedder.embed_many` (padded batches) for offline work.

Usage: python bench/embedding_throughput.py [--limit N] [--threads T] [--out bench/out/throughput.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceid.config import get_settings
from voiceid.engine import Engine
from voiceid.evaluation.protocol import read_manifest


def summarise(name: str, latencies: list[float], audio_s: float) -> dict[str, Any]:
    lat = np.array(latencies)
    return {
        "name": name,
        "utterances": len(lat),
        "utt_per_s": len(lat) / lat.sum(),
        "rtf": lat.sum() / audio_s,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p95_ms": float(np.percentile(lat, 95) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="first N utterances (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/throughput.json"))
    args = parser.parse_args()

    settings = get_settings()
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    utts = read_manifest(manifest)
    if args.limit:
        utts = utts[: args.limit]
    engine = Engine.from_settings(settings)

    from speechbrain.inference.speaker import EncoderClassifier

    bare: Any = EncoderClassifier.from_hparams(
        source=str(settings.model_dir),
        savedir=tempfile.mkdtemp(prefix="voiceid-bench-"),
        overrides={"pretrained_path": str(settings.model_dir)},
        run_opts={"device": "cpu"},
    )
    payloads = [(u.path.read_bytes(), "audio/flac") for u in utts]
    waves = [engine.front_end.decode(d, c).samples for d, c in payloads]  # dev set is 16 kHz already
    audio_s = sum(len(w) for w in waves) / 16000

    # Warm-up so one-off allocations and lazy loads are not timed.
    engine.embed_bytes(*payloads[0])
    with torch.inference_mode():
        bare.encode_batch(torch.from_numpy(waves[0]).unsqueeze(0))

    full, embed_only, bare_lat = [], [], []
    for (data, ctype), wave in zip(payloads, waves, strict=True):
        t0 = time.perf_counter()
        prepared = engine.front_end.prepare(data, ctype)
        t1 = time.perf_counter()
        engine.embedder.embed(prepared.speech)
        t2 = time.perf_counter()
        with torch.inference_mode():
            bare.encode_batch(torch.from_numpy(wave).unsqueeze(0))
        t3 = time.perf_counter()
        full.append(t2 - t0)
        embed_only.append(t2 - t1)
        bare_lat.append(t3 - t2)

    t0 = time.perf_counter()
    engine.embedder.embed_many(waves, max_batch_seconds=settings.embed_batch_seconds)
    batched_s = time.perf_counter() - t0

    results = {
        "manifest": str(manifest),
        "audio_s": audio_s,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "rows": [
            summarise("voiceid full (decode+VAD+embed)", full, audio_s),
            summarise("voiceid embed only (after VAD)", embed_only, audio_s),
            summarise("speechbrain bare encode_batch (whole file)", bare_lat, audio_s),
        ],
        "batched_embed_many": {"utt_per_s": len(waves) / batched_s, "rtf": batched_s / audio_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{len(utts)} utterances, {audio_s / 60:.1f} min of audio, torch threads {results['torch_threads']}")
    print("| path | utt/s | real-time factor | p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for row in results["rows"]:
        print(
            f"| {row['name']} | {row['utt_per_s']:.2f} | {row['rtf']:.4f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |"
        )
    b = results["batched_embed_many"]
    print(f"| voiceid embed_many (padded batches, whole files) | {b['utt_per_s']:.2f} | {b['rtf']:.4f} | - | - |")


if __name__ == "__main__":
    main()
