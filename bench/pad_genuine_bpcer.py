"""How many genuine callers the shipped PAD thresholds flag on speech that was not used to fit them.

    python bench/pad_dev_bonafide.py --every 10            # 105 files of ../shared/data/dev
    nice -n 10 python bench/pad_cache.py --manifest bench/out/dev_bonafide.csv clean g711-ulaw
    python bench/pad_genuine_bpcer.py bench/out/dev_bonafide.csv

Scores every file with the shipped detector (CM + back-end) from the cache and applies the shipped
threshold of the channel it arrives on (clean -> wideband, G.711 -> phone).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from voiceid.antispoof.policy import load_thresholds
from voiceid.config import get_settings
from voiceid.evaluation.pad import run_pad, service_channel


def main(manifest: Path, channels: list[str]) -> None:
    settings = get_settings()
    thresholds = load_thresholds(settings.cm_thresholds_file)
    for channel in channels:
        run = run_pad(manifest, channel, "shipped", settings)
        scores = np.array([run.scores[i.utt_id] for i in run.items if i.utt_id in run.scores])
        t = thresholds.threshold(service_channel(channel))
        flagged = float(np.mean(scores < t))
        print(
            f"{channel:10s} n={scores.size}  BPCER at the shipped {service_channel(channel)} threshold {t:.3f}: "
            f"{flagged * 100:.1f} %  (score median {np.median(scores):.2f}, 5th pct {np.quantile(scores, 0.05):.2f})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["clean", "g711-ulaw"])
