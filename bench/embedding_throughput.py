"""Embedding speed on the dev set: bare SpeechBrain, the product on torch, the product optimised.

One run, the same files, one thread each, calls interleaved utterance by utterance so that the
other load on a shared machine falls on every path alike:
- `speechbrain bare`: `EncoderClassifier.encode_batch` on the whole decoded 16 kHz file (the
  baseline the issue names; decoding not counted);
- `voiceid torch + TorchScript VAD`: the product's whole path as it was before issue 13, bytes ->
  decode -> 16 kHz -> Silero VAD (TorchScript) -> quality report -> Fbank -> ECAPA in PyTorch eager
  fp32 (`Engine.analyse`);
- `voiceid torch + ONNX VAD`: the fp32 network with today's VAD (`VOICEID_INFERENCE_BACKEND=torch`,
  what an existing fp32 deployment keeps running);
- `voiceid <backend> + ONNX VAD`: the same path with `--backend` (default `auto`, the product's
  default: torch-bf16 on a CPU with native bf16, else torch);
- the network alone on every backend (torch, onnx fp32, onnx int8, torch bf16), same features.

Throughput is reported per core from CPU time (`time.thread_time`, the calling thread does all
the work with one intra-op thread), which other processes barely disturb; p50/p95 are wall-clock
latencies and are noisy on a shared machine. A stage profile of both whole paths follows, then
requests/s and p95 through the service's `InferencePool` for 1, 2 and 4 concurrent callers at
several worker / thread settings.

Usage: python bench/embedding_throughput.py [--limit N] [--backend auto] [--requests 24]
       [--no-concurrency] [--out bench/out/throughput.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceid.audio.decode import DecodedAudio
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.quality import estimate_snr_db
from voiceid.audio.resample import MODEL_RATE, resample
from voiceid.audio.vad import shorten_pauses, speech_mask, speech_segments
from voiceid.config import InferenceBackend, Settings, VadBackend, get_settings
from voiceid.engine import Engine
from voiceid.evaluation.protocol import read_manifest
from voiceid.inference import InferencePool
from voiceid.models.embedder import Embedder
from voiceid.models.registry import concrete_backend, load_embedder


def summarise(name: str, cpu: list[float], wall: list[float], audio_s: float) -> dict[str, Any]:
    cpu_a, wall_a = np.array(cpu), np.array(wall)
    return {
        "name": name,
        "utterances": len(cpu_a),
        "utt_per_s_per_core": len(cpu_a) / cpu_a.sum(),
        "rtf_cpu": cpu_a.sum() / audio_s,
        "utt_per_s_wall": len(wall_a) / wall_a.sum(),
        "p50_ms": float(np.percentile(wall_a, 50) * 1000),
        "p95_ms": float(np.percentile(wall_a, 95) * 1000),
    }


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, float]:
    c0, w0 = time.thread_time(), time.perf_counter()
    fn(*args)
    return time.thread_time() - c0, time.perf_counter() - w0


def stage_profile(front_end: FrontEnd, embedder: Embedder, decoded: DecodedAudio, out: dict[str, float]) -> None:
    """The whole path split into stages (CPU seconds added to `out`), as FrontEnd + Embedder run it."""
    config = front_end.config
    marks: list[tuple[str, float]] = [("start", time.thread_time())]

    def mark(stage: str) -> None:
        marks.append((stage, time.thread_time()))

    wave = resample(decoded.samples, decoded.sample_rate, MODEL_RATE)
    mark("resample")
    mask = speech_mask(len(wave), speech_segments(wave, config.vad))
    mark("VAD (Silero)")
    estimate_snr_db(wave, mask, MODEL_RATE)
    mark("quality report (SNR)")
    speech = wave[shorten_pauses(mask, int(config.max_pause_s * MODEL_RATE))]
    mark("pause shortening")
    tensor = torch.from_numpy(np.ascontiguousarray(speech)).unsqueeze(0)
    feats = embedder._features(tensor, torch.ones(1))
    mark("features (Fbank + mean norm)")
    embedder._network(feats, torch.ones(1))
    mark("ECAPA network")
    for (_, before), (stage, after) in itertools.pairwise(marks):
        out[stage] += after - before


class _Load:
    """`requests` calls shared out among caller threads, each waiting for its answer (an IVR leg)."""

    def __init__(self, pool: InferencePool, engine: Engine, payloads: list[tuple[bytes, str]], requests: int) -> None:
        self.pool, self.engine, self.payloads = pool, engine, payloads
        self.todo = iter(range(requests))
        self.lock = threading.Lock()
        self.latencies: list[float] = []

    def caller(self) -> None:
        while True:
            with self.lock:
                i = next(self.todo, None)
            if i is None:
                return
            t0 = time.perf_counter()
            self.pool.run(self.engine.analyse, *self.payloads[i % len(self.payloads)])
            with self.lock:
                self.latencies.append(time.perf_counter() - t0)


def concurrency(engine: Engine, payloads: list[tuple[bytes, str]], requests: int) -> list[dict[str, Any]]:
    """req/s and p95 through the service's pool, for worker counts x torch threads x callers."""
    rows = []
    for workers in (1, 2):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            pool = InferencePool(workers, queue=64)
            for callers in (1, 2, 4):
                load = _Load(pool, engine, payloads, requests)
                threads_ = [threading.Thread(target=load.caller) for _ in range(callers)]
                t0 = time.perf_counter()
                for t in threads_:
                    t.start()
                for t in threads_:
                    t.join()
                elapsed = time.perf_counter() - t0
                rows.append(
                    {
                        "workers": workers,
                        "threads_per_worker": threads,
                        "callers": callers,
                        "req_per_s": requests / elapsed,
                        "p95_ms": float(np.percentile(load.latencies, 95) * 1000),
                    }
                )
                print(rows[-1], flush=True)
            pool.shutdown()
    torch.set_num_threads(1)
    return rows


def front_end_with(settings: Settings, vad: VadBackend) -> FrontEnd:
    config = FrontEndConfig.from_settings(settings)
    return FrontEnd(replace(config, vad=replace(config.vad, backend=vad)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="every k-th utterance so that about N are used (0 = all)")
    parser.add_argument("--backend", type=InferenceBackend, default=InferenceBackend.AUTO)
    parser.add_argument("--requests", type=int, default=24, help="requests per concurrency setting")
    parser.add_argument("--no-concurrency", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/throughput.json"))
    args = parser.parse_args()
    args.backend = concrete_backend(args.backend)  # `auto` as the service resolves it with nothing enrolled

    torch.set_num_threads(1)
    settings = get_settings()
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    utts = read_manifest(manifest)
    if args.limit:
        utts = utts[:: max(1, len(utts) // args.limit)][: args.limit]
    torch_net = load_embedder(settings.model_dir, 1, InferenceBackend.TORCH)
    reference = Engine(front_end_with(settings, VadBackend.TORCH), torch_net)  # the product before issue 13
    torch_onnx_vad = Engine(front_end_with(settings, VadBackend.ONNX), torch_net)
    optimised = Engine(front_end_with(settings, VadBackend.ONNX), load_embedder(settings.model_dir, 1, args.backend))
    networks: dict[str, Embedder] = {"torch fp32 (eager)": reference.embedder}
    for name, backend in (
        ("onnx fp32 (ORT)", InferenceBackend.ONNX),
        ("onnx int8 (ORT, static QDQ)", InferenceBackend.ONNX_INT8),
        ("torch bf16 (traced, oneDNN)", InferenceBackend.TORCH_BF16),
    ):
        networks[name] = (
            optimised.embedder if backend is args.backend else load_embedder(settings.model_dir, 1, backend)
        )

    from speechbrain.inference.speaker import EncoderClassifier

    bare: Any = EncoderClassifier.from_hparams(
        source=str(settings.model_dir),
        savedir=tempfile.mkdtemp(prefix="voiceid-bench-"),
        overrides={"pretrained_path": str(settings.model_dir)},
        run_opts={"device": "cpu"},
    )
    payloads = [(u.path.read_bytes(), "audio/flac") for u in utts]
    decoded = [reference.front_end.decode(d, c) for d, c in payloads]
    waves = [resample(d.samples, d.sample_rate, MODEL_RATE) for d in decoded]
    audio_s = sum(len(w) for w in waves) / MODEL_RATE

    def bare_encode(wave: np.ndarray) -> None:
        with torch.inference_mode():
            bare.encode_batch(torch.from_numpy(wave).unsqueeze(0))

    # Warm-up: lazy loads, oneDNN primitive creation and ORT arenas are not timed.
    for _ in range(2):
        reference.analyse(*payloads[0])
        torch_onnx_vad.analyse(*payloads[0])
        optimised.analyse(*payloads[0])
        bare_encode(waves[0])
    full_name = f"voiceid {args.backend} + ONNX VAD, whole path"
    paths: dict[str, Callable[[int], Any]] = {
        "speechbrain bare encode_batch (whole file, no decode)": lambda i: bare_encode(waves[i]),
        "voiceid torch + TorchScript VAD, whole path (before)": lambda i: reference.analyse(*payloads[i]),
        "voiceid torch + ONNX VAD, whole path": lambda i: torch_onnx_vad.analyse(*payloads[i]),
        full_name: lambda i: optimised.analyse(*payloads[i]),
    }
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    net_cpu: dict[str, float] = defaultdict(float)
    profiles: dict[str, dict[str, float]] = {"torch": defaultdict(float), str(args.backend): defaultdict(float)}
    for i in range(len(payloads)):
        for name, fn in paths.items():
            c, w = timed(fn, i)
            cpu[name].append(c)
            wall[name].append(w)
        speech = reference.front_end.prepare_decoded(decoded[i]).speech
        feats = reference.embedder._features(torch.from_numpy(speech).unsqueeze(0), torch.ones(1))
        for name, embedder in networks.items():
            net_cpu[name] += timed(embedder._network, feats, torch.ones(1))[0]
        c0 = time.thread_time()
        reference.front_end.decode(*payloads[i])
        decode_s = time.thread_time() - c0
        for key, engine in (("torch", reference), (str(args.backend), optimised)):
            profiles[key]["decode"] += decode_s
            stage_profile(engine.front_end, engine.embedder, decoded[i], profiles[key])

    rows = [summarise(name, cpu[name], wall[name], audio_s) for name in paths]
    bare_rate = rows[0]["utt_per_s_per_core"]
    results: dict[str, Any] = {
        "manifest": str(manifest),
        "utterances": len(payloads),
        "audio_s": audio_s,
        "threads": 1,
        "cpu": platform.processor() or platform.machine(),
        "optimised_backend": str(args.backend),
        "rows": rows,
        "speedup_vs_bare": {r["name"]: r["utt_per_s_per_core"] / bare_rate for r in rows},
        "network_only_cpu_ms": {k: v / len(payloads) * 1000 for k, v in net_cpu.items()},
        "profile_cpu_ms": {k: {s: v / len(payloads) * 1000 for s, v in p.items()} for k, p in profiles.items()},
    }
    print(f"{len(payloads)} utterances, {audio_s / 60:.1f} min of audio, one thread; CPU-time throughput per core")
    print("| path | utt/s per core | x bare | real-time factor | p50 ms (wall) | p95 ms (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['name']} | {row['utt_per_s_per_core']:.2f} | {row['utt_per_s_per_core'] / bare_rate:.2f} | "
            f"{row['rtf_cpu']:.4f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |"
        )
    print("\n| network only (same features) | CPU ms / utt | x torch |\n|---|---:|---:|")
    base = results["network_only_cpu_ms"]["torch fp32 (eager)"]
    for name, ms in results["network_only_cpu_ms"].items():
        print(f"| {name} | {ms:.1f} | {base / ms:.2f} |")
    print(f"\n| stage (CPU ms / utt) | torch + TorchScript VAD | {args.backend} + ONNX VAD |\n|---|---:|---:|")
    prof_t, prof_o = results["profile_cpu_ms"]["torch"], results["profile_cpu_ms"][str(args.backend)]
    for stage in prof_t:
        print(f"| {stage} | {prof_t[stage]:.1f} | {prof_o[stage]:.1f} |")
    print(f"| **total** | {sum(prof_t.values()):.1f} | {sum(prof_o.values()):.1f} |")
    if not args.no_concurrency:
        print(f"\nconcurrency through InferencePool, {full_name}, {args.requests} requests per setting")
        results["concurrency"] = concurrency(optimised, payloads, args.requests)
        print("| workers | threads/worker | callers | req/s | p95 ms |\n|---:|---:|---:|---:|---:|")
        for r in results["concurrency"]:
            print(
                f"| {r['workers']} | {r['threads_per_worker']} | {r['callers']} | {r['req_per_s']:.2f} | "
                f"{r['p95_ms']:.0f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
