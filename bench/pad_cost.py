"""Cost of the presentation-attack stage per call, in milliseconds (one CPU thread, like the service).

    nice -n 10 python bench/pad_cost.py [--repeats 5]

Times, on real dev speech (LibriSpeech files joined) cut to 4 / 8 / 16 s: the countermeasure on its
three runtimes (bf16 compiled, the default on a CPU with native bf16; onnxruntime fp32, the
manifest's reference; PyTorch fp32 eager), the fingerprint, and matching it against 24 stored
fingerprints. Medians of `--repeats` rounds, the runtimes interleaved within each round so that a
machine shared with other jobs loads them alike (the ratios hold better than the absolute times).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voiceid.antispoof.detector import load_countermeasure
from voiceid.antispoof.fetch import builtin_manifest
from voiceid.antispoof.fingerprint import best_match, fingerprint
from voiceid.antispoof.manifest import write_manifest
from voiceid.config import CmRuntime, get_settings


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def interleaved_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for k in range(len(fns)):
            i = (r + k) % len(fns)  # rotate the order
            start = time.perf_counter()
            fns[i]()
            times[i].append((time.perf_counter() - start) * 1000)
    return [float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = get_settings()
    torch.set_num_threads(1)
    onnx = load_countermeasure(settings.cm_model_dir, threads=1, runtime=CmRuntime.MANIFEST)
    bf16 = load_countermeasure(settings.cm_model_dir, threads=1, runtime=CmRuntime.TORCH_BF16)
    torch_dir = Path(settings.data_dir) / "cache" / "aasist-torch"
    torch_dir.mkdir(parents=True, exist_ok=True)
    (torch_dir / "AASIST.pth").write_bytes((settings.cm_model_dir / "AASIST.pth").read_bytes())
    write_manifest(torch_dir, builtin_manifest(settings.cm_max_windows))
    pt = load_countermeasure(torch_dir, threads=1)
    dev = settings.dev_data_dir / "dev"
    with (dev / "manifest.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if float(r["duration_s"]) >= 12.0]
    # the longest dev files (LibriSpeech, 12-15 s) joined to make calls of up to 16 s
    wave = np.concatenate([sf.read(str(dev / r["path"]), dtype="float32")[0] for r in rows[:2]])
    rate = 16000
    stored = [fingerprint(wave[i * rate : (i + 8) * rate], rate) for i in range(0, 8)] * 3  # 24 recordings
    print(f"max_windows {settings.cm_max_windows}; {args.repeats} repeats, median ms")
    for seconds in (4, 8, 16):
        clip = wave[: seconds * rate]
        fp = fingerprint(clip, rate)
        ms_bf16, ms_onnx, ms_torch = interleaved_ms(
            [lambda c=clip: bf16.score(c, rate), lambda c=clip: onnx.score(c, rate), lambda c=clip: pt.score(c, rate)],  # type: ignore[misc]
            args.repeats,
        )
        ms_fp = median_ms(lambda c=clip: fingerprint(c, rate), args.repeats)  # type: ignore[misc]
        ms_match = median_ms(lambda f=fp: best_match(f, stored), args.repeats)  # type: ignore[misc]
        print(
            f"{seconds:2d} s call: CM bf16 {ms_bf16:7.0f}  CM onnxruntime {ms_onnx:7.0f}  CM PyTorch {ms_torch:7.0f}  "
            f"(onnx/bf16 {ms_onnx / ms_bf16:.2f}x)  fingerprint {ms_fp:5.0f}  "
            f"match vs {len(stored)} stored {ms_match:5.0f}"
        )


if __name__ == "__main__":
    main()
