"""Issue 13's check from outside: whole processes, timed by the operating system, on other files.

    VOICEID_DEV_DATA_DIR=../shared/data python bench/whole_process.py [--manifest M] [--limit N] [--rounds 3]

Runs two kinds of child process over the same audio files, one thread each (OMP/MKL threads 1,
torch intra-op threads 1), alternating so background load falls on both alike:

- `bare`: SpeechBrain's `EncoderClassifier` as its documentation uses it: `load_audio(path)`
  (torchaudio decode + resample to 16 kHz), then `encode_batch` on the whole file;
- `voiceid`: the product's whole path with its defaults (`Engine.embedding_only`: decode, resample,
  Silero VAD, quality report, pause shortening, features, the network on `VOICEID_INFERENCE_BACKEND`,
  default `auto`), bytes in, unit vector out.

Each child reports its CPU time (user + system, all its threads) after loading the model, and the
parent reads the whole process's CPU time (start-up, imports and model load included) from
`getrusage(RUSAGE_CHILDREN)`. The default files are `dev_cohort` (LibriSpeech speakers that appear
nowhere in the dev set the rest of the work was measured on). The countermeasure is not in either
path (issue 13 defines the path as decode, VAD and embedding; its cost is in docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(kind: str, files: list[Path]) -> dict[str, Any]:
    import tempfile

    import torch

    torch.set_num_threads(1)
    from voiceid.config import get_settings

    settings = get_settings()
    if kind == "bare":
        from speechbrain.inference.speaker import EncoderClassifier

        model: Any = EncoderClassifier.from_hparams(
            source=str(settings.model_dir),
            savedir=tempfile.mkdtemp(prefix="voiceid-bench-"),
            overrides={"pretrained_path": str(settings.model_dir)},
            run_opts={"device": "cpu"},
        )

        def run(path: Path) -> None:
            with torch.inference_mode():
                model.encode_batch(model.load_audio(str(path)).unsqueeze(0))

        label = "speechbrain bare"
    else:
        from voiceid.engine import Engine
        from voiceid.models.registry import concrete_backend

        engine = Engine.embedding_only(settings)
        types = {".flac": "audio/flac", ".wav": "audio/wav"}

        def run(path: Path) -> None:
            engine.analyse(path.read_bytes(), types.get(path.suffix, "application/octet-stream"))

        label = f"voiceid {concrete_backend(settings.inference_backend)}"
    run(files[0])  # warm-up: lazy loads and oneDNN primitive creation, as any long-running service has done
    start_cpu, start_wall = cpu_s(), time.perf_counter()
    for path in files:
        run(path)
    return {"label": label, "cpu_s": cpu_s() - start_cpu, "wall_s": time.perf_counter() - start_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("bare", "voiceid"), help=argparse.SUPPRESS)
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        files = [Path(line) for line in args.files.read_text().splitlines() if line]
        print(json.dumps(child(args.child, files)))
        return

    import soundfile

    from voiceid.config import get_settings
    from voiceid.evaluation.protocol import read_manifest

    manifest = args.manifest or get_settings().dev_data_dir / "dev_cohort" / "manifest.csv"
    utts = read_manifest(manifest)
    if args.limit:
        utts = utts[:: max(1, len(utts) // args.limit)][: args.limit]
    audio_s = sum(soundfile.info(str(u.path)).duration for u in utts)
    listing = Path(os.environ.get("TMPDIR", "/tmp")) / f"voiceid-whole-process-{os.getpid()}.txt"
    listing.write_text("\n".join(str(u.path) for u in utts))
    env = {**os.environ, **ONE_THREAD}
    results: dict[str, list[dict[str, float]]] = {"bare": [], "voiceid": []}
    labels: dict[str, str] = {}
    for _ in range(args.rounds):
        for kind in ("bare", "voiceid"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--files", str(listing)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            report = json.loads(out.stdout.strip().splitlines()[-1])
            labels[kind] = report["label"]
            whole_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            results[kind].append(
                {"cpu_s": report["cpu_s"], "whole_cpu_s": whole_cpu, "whole_wall_s": time.perf_counter() - start}
            )
    listing.unlink(missing_ok=True)
    n = len(utts)
    print(f"# {n} files from {manifest} ({audio_s / 60:.1f} min of audio), {args.rounds} rounds, best round shown")
    print("| process | utt/s per core (after load) | x bare | real-time factor | whole process CPU s (incl. load) |")
    print("|---|---:|---:|---:|---:|")
    best = {kind: min(rows, key=lambda r: r["cpu_s"]) for kind, rows in results.items()}
    for kind in ("bare", "voiceid"):
        row = best[kind]
        rate = n / row["cpu_s"]
        ratio = best["bare"]["cpu_s"] / row["cpu_s"]
        print(
            f"| {labels[kind]} | {rate:.2f} | {ratio:.2f} | {row['cpu_s'] / audio_s:.3f} | {row['whole_cpu_s']:.1f} |"
        )
    print(json.dumps({"files": n, "audio_s": audio_s, "labels": labels, "rounds": results}))


if __name__ == "__main__":
    main()
