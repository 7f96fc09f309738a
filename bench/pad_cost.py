"""Cost of the presentation-attack stage per call, in milliseconds (one CPU thread, like the service).

    nice -n 10 python bench/pad_cost.py [--repeats 5]

Times, on real dev speech (LibriSpeech files joined) cut to 4 / 8 / 16 s: the countermeasure through
onnxruntime (the installed default) and through PyTorch, the fingerprint, and matching it against 24
stored fingerprints. Medians;
on a shared machine the figures are noisy (other processes compete for the cores).
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
from voiceid.config import get_settings


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = get_settings()
    torch.set_num_threads(1)
    onnx = load_countermeasure(settings.cm_model_dir, threads=1)
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
        n = args.repeats
        ms_onnx = median_ms(lambda c=clip: onnx.score(c, rate), n)  # type: ignore[misc]
        ms_torch = median_ms(lambda c=clip: pt.score(c, rate), n)  # type: ignore[misc]
        ms_fp = median_ms(lambda c=clip: fingerprint(c, rate), n)  # type: ignore[misc]
        ms_match = median_ms(lambda f=fp: best_match(f, stored), n)  # type: ignore[misc]
        print(
            f"{seconds:2d} s call: CM onnxruntime {ms_onnx:7.0f}  CM PyTorch {ms_torch:7.0f}  "
            f"fingerprint {ms_fp:5.0f}  match vs {len(stored)} stored {ms_match:5.0f}"
        )


if __name__ == "__main__":
    main()
