"""Write a dev_spoof-format manifest of genuine speech from a speaker-verification data set.

    python bench/pad_dev_bonafide.py --every 4 --out bench/out/dev_bonafide.csv
    python bench/pad_dev_bonafide.py --dataset dev_cohort --every 3 --out bench/out/cohort_bonafide.csv

Every k-th file of ../shared/data/<dataset> (dev: speechocean762 read English by Mandarin speakers,
LibriSpeech; dev_cohort: LibriSpeech train-clean-100; dev_8k: FSDD digit strings at 8 kHz), all
labelled bona fide, sources named `<dataset>/<source>` as `voiceid calibrate-pad` names them when
given the data set's own manifest. A subset keeps the CM's cost on this shared machine bounded.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from voiceid.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--dataset", default="dev", help="dev | dev_cohort | dev_8k")
    parser.add_argument("--out", type=Path, default=Path("bench/out/dev_bonafide.csv"))
    args = parser.parse_args()
    dev = get_settings().dev_data_dir / args.dataset
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
                    "source_repo": f"{args.dataset}/{row['source']}",
                    "source_path": row["path"],
                    "license": f"see ../shared/data/{args.dataset}/SOURCES.md",
                }
            )
    print(f"{len(rows)} bona fide files -> {args.out}")


if __name__ == "__main__":
    main()
