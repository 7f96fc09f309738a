"""Countermeasure thresholds that hold for genuine callers, not only for dev_spoof's bona fide.

The thresholds `voiceid calibrate-pad` fits on dev_spoof's 184 bona fide files flagged 10.5 %
(wideband) and 12.4 % (phone) of the speaker-verification dev set's genuine utterances, twice the 5 %
target: dev_spoof's bona fide is not what callers sound like. Here each channel's threshold is the
most lenient of two: the one that flags at most the target BPCER of dev_spoof's bona fide, and the one
that flags at most the target of *half* the dev speakers' utterances (every other speaker). The other
half is held out and reports the BPCER a new caller meets; APCER is reported per attack at the old and
the new threshold, so the price in missed attacks is on the table.

    python bench/pad_dev_bonafide.py --every 10 --out bench/out/dev_bonafide.csv
    python bench/pad_caller_thresholds.py [--write]   # --write replaces voiceid/antispoof/data/pad_thresholds.json

CM outputs come from the cache `voiceid eval-pad` / bench/pad_cache.py fill (computed if missing).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from voiceid.antispoof.metrics import bpcer_at, threshold_at_bpcer
from voiceid.antispoof.policy import ChannelThreshold, PadThresholds, load_thresholds, save_thresholds
from voiceid.config import get_settings
from voiceid.evaluation.pad import run_pad, service_channel

SHIPPED = Path(__file__).resolve().parents[1] / "voiceid" / "antispoof" / "data" / "pad_thresholds.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=Path, default=Path("bench/out/dev_bonafide.csv"))
    parser.add_argument("--write", action="store_true")
    # The issue-12 experiment's target; issue 18's fit (several sources, BPCER 1 %) is `voiceid calibrate-pad`.
    parser.add_argument("--target-bpcer", type=float, default=0.05)
    args = parser.parse_args()
    settings = get_settings()
    spoof_manifest = settings.dev_data_dir / "dev_spoof" / "manifest.csv"
    target = args.target_bpcer
    old = load_thresholds(SHIPPED)
    channels = {}
    report = {}
    for channel in ("clean", "g711-ulaw"):
        spoof_run = run_pad(spoof_manifest, channel, "shipped", settings)
        caller_run = run_pad(args.callers, channel, "shipped", settings)
        name = service_channel(channel)
        bona = np.array([spoof_run.scores[i.utt_id] for i in spoof_run.items if i.is_bonafide])
        speakers = sorted({i.speaker_id for i in caller_run.items})
        fit_speakers = set(speakers[0::2])
        fit = np.array([caller_run.scores[i.utt_id] for i in caller_run.items if i.speaker_id in fit_speakers])
        held = np.array([caller_run.scores[i.utt_id] for i in caller_run.items if i.speaker_id not in fit_speakers])
        threshold = min(threshold_at_bpcer(bona, target), threshold_at_bpcer(fit, target))
        pooled = np.concatenate([bona, fit])
        channels[name] = ChannelThreshold(threshold, target, bpcer_at(pooled, threshold), len(pooled))
        before = old.threshold(name)
        by_attack: dict[str, list[float]] = defaultdict(list)
        for item in spoof_run.items:
            if not item.is_bonafide:
                by_attack[item.attack_id].append(spoof_run.scores[item.utt_id])
        report[channel] = {
            "threshold_before": round(before, 3),
            "threshold_after": round(threshold, 3),
            "held_out_caller_bpcer_before": round(bpcer_at(held, before), 4),
            "held_out_caller_bpcer_after": round(bpcer_at(held, threshold), 4),
            "n_held_out_callers": int(held.size),
            "dev_spoof_bpcer_after": round(bpcer_at(bona, threshold), 4),
            "apcer_before_after": {
                a: (round(float(np.mean(np.array(s) >= before)), 3), round(float(np.mean(np.array(s) >= threshold)), 3))
                for a, s in sorted(by_attack.items())
            },
        }
    print(json.dumps(report, indent=2))
    if args.write:
        save_thresholds(PadThresholds(old.backend_id, channels), SHIPPED)
        print(f"wrote {SHIPPED}")


if __name__ == "__main__":
    main()
