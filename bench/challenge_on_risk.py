"""How many genuine callers `VOICEID_CHALLENGE_POLICY=on-risk` asks for a challenge, from the
countermeasure alone (a linked voice adds to it; genuine callers are rarely linked).

    python bench/pad_dev_bonafide.py --every 10            # 105 files of ../shared/data/dev
    python bench/challenge_on_risk.py bench/out/dev_bonafide.csv clean g711-ulaw

A genuine would-be ACCEPT is stepped up (INCONCLUSIVE CHALLENGE_REQUIRED) when the countermeasure
passed it by less than the band: threshold <= cm_score < threshold + band. Those it flags (below
the threshold) are not ACCEPT anyway. Scores come from the shipped detector (CM + back-end) and the
shipped thresholds, as the service applies them; the same arithmetic as voiceid.challenge.policy.at_risk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from voiceid.antispoof.policy import load_thresholds
from voiceid.challenge.policy import at_risk
from voiceid.config import get_settings
from voiceid.evaluation.pad import run_pad, service_channel

BANDS = (0.25, 0.5, 1.0, 2.0)


def main(manifest: Path, channels: list[str]) -> None:
    settings = get_settings()
    thresholds = load_thresholds(settings.cm_thresholds_file)
    for channel in channels:
        run = run_pad(manifest, channel, "shipped", settings)
        scores = [run.scores[i.utt_id] for i in run.items if i.utt_id in run.scores]
        t = thresholds.threshold(service_channel(channel))
        flagged = float(np.mean([s < t for s in scores]))
        line = f"{channel:10s} n={len(scores)}  threshold {t:.3f}  flagged {flagged * 100:.1f} %"
        for band in BANDS:
            stepped = np.mean([at_risk(s, t, band, linked=False) and s >= t for s in scores])
            marker = " (default)" if band == settings.challenge_cm_band else ""
            line += f"  | band {band:g}{marker}: stepped up {stepped * 100:.1f} %"
        print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["clean", "g711-ulaw"])
