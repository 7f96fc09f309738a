"""Write a dev_spoof-format manifest of genuine speech from the speaker-verification dev set.

    python bench/pad_dev_bonafide.py --every 10 --out bench/out/dev_bonafide.csv

Every k-th file of ../shared/data/dev (speechocean762 read English by Mandarin speakers, LibriSpeech),
all labelled bona fide. None of it is used to fit anything: it measures how many genuine callers the
shipped thresholds flag (BPCER) on speech unlike dev_spoof's bona fide.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from voiceid.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/out/dev_bonafide.csv"))
    args = parser.parse_args()
    dev = get_settings().dev_data_dir / "dev"
    with (dev / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:: args.every]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["utt_id", "label", "attack_id", "speaker_id", "path", "source_repo", "source_path", "license"]
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    "utt_id": row["utt_id"],
                    "label": "bonafide",
                    "attack_id": "bonafide",
                    "speaker_id": row["speaker_id"],
                    "path": str((dev / row["path"]).resolve()),
                    "source_repo": f"dev/{row['source']}",
                    "source_path": row["path"],
                    "license": "see ../shared/data/dev/SOURCES.md",
                }
            )
    print(f"{len(rows)} bona fide files -> {args.out}")


if __name__ == "__main__":
    main()
