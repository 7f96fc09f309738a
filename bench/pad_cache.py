"""Fill the on-disk cache of raw countermeasure outputs for dev_spoof on the given channels.

    nice -n 10 python bench/pad_cache.py clean g711-ulaw g711-alaw
    nice -n 10 python bench/pad_cache.py --manifest ../shared/data/dev/manifest.csv \
        --manifest ../shared/data/dev_8k/manifest.csv clean g711-ulaw

A manifest may be dev_spoof-style or a speaker-verification manifest (all bona fide).

`voiceid eval-pad` and bench/pad_backend.py then read the cache instead of re-running AASIST
(about 1-2 s per 4-s window on one shared CPU core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from voiceid.antispoof.detector import load_countermeasure
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.config import get_settings
from voiceid.evaluation.pad import CmCache, ItemProblem, read_pad_manifest, score_items


def main(channels: list[str], manifests: list[Path]) -> None:
    settings = get_settings()
    torch.set_num_threads(1)
    cm = load_countermeasure(settings.cm_model_dir, threads=1)
    items = [
        i for m in manifests or [settings.dev_data_dir / "dev_spoof" / "manifest.csv"] for i in read_pad_manifest(m)
    ]
    cache = CmCache(settings.data_dir / "cache" / "cm", cm.manifest.cache_key)
    front_end = FrontEnd(FrontEndConfig.from_settings(settings))
    for channel in channels:
        started = time.perf_counter()
        for i in range(0, len(items), 50):
            problems: list[ItemProblem] = []
            score_items(items[i : i + 50], channel, cm, front_end, cache, problems=problems)
            for problem in problems:
                print(f"  {problem.utt_id}: {problem.action} ({problem.code})", flush=True)
            print(
                f"{channel}: {min(i + 50, len(items))}/{len(items)} in {time.perf_counter() - started:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("channels", nargs="*", default=["clean"])
    parser.add_argument("--manifest", type=Path, action="append", default=[], help="repeatable; default: dev_spoof")
    args = parser.parse_args()
    main(args.channels, args.manifest)
