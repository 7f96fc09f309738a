"""Replay-detection figures on dev speech: simulated re-recordings vs fresh utterances of the same speaker.

    nice -n 10 python bench/replay.py [--speakers 12]

For each speaker the first utterance is "enrolment audio". Replays: that file (and an excerpt of it)
played through simulated loudspeaker + room + G.711 + noise channels, mild to harsh. Fresh calls: the
speaker's other utterances, clean and over a phone line. Prints the match-score distribution of
both and the share caught / falsely matched at VOICEID_REPLAY_THRESHOLD.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from voiceid.antispoof.fingerprint import best_match, fingerprint
from voiceid.antispoof.replay_sim import ReplayChannel, simulate_replay
from voiceid.config import get_settings

CHANNELS = {
    "mild (rt60 0.3 s, SNR 25 dB)": ReplayChannel(rt60_s=0.3, snr_db=25.0),
    "typical (rt60 0.4 s, SNR 20 dB)": ReplayChannel(),
    "harsh (rt60 0.7 s, SNR 10 dB, A-law)": ReplayChannel(rt60_s=0.7, snr_db=10.0, direct_to_reverb_db=0.0, law="alaw"),
}
PHONE = ReplayChannel(rt60_s=0.05, direct_to_reverb_db=20.0, snr_db=30.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=12)
    parser.add_argument("--fresh", type=int, default=4)
    args = parser.parse_args()
    settings = get_settings()
    dev = settings.dev_data_dir / "dev"
    files: dict[str, list[Path]] = defaultdict(list)
    with (dev / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            files[row["speaker_id"]].append(dev / row["path"])
    rng = np.random.default_rng(12)
    replay: dict[str, list[float]] = defaultdict(list)
    fresh: list[float] = []
    for speaker in sorted(files)[: args.speakers]:
        wave, rate = sf.read(str(files[speaker][0]), dtype="float32")
        stored = [fingerprint(wave, rate)]
        for name, channel in CHANNELS.items():
            replay[name].append(best_match(fingerprint(simulate_replay(wave, rate, channel, rng), 8000), stored)[0])
            half = wave[len(wave) // 4 : 3 * len(wave) // 4]
            replay[name + ", half excerpt"].append(
                best_match(fingerprint(simulate_replay(half, rate, channel, rng), 8000), stored)[0]
            )
        for other in files[speaker][1 : 1 + args.fresh]:
            w, r = sf.read(str(other), dtype="float32")
            fresh.append(best_match(fingerprint(w, r), stored)[0])
            fresh.append(best_match(fingerprint(simulate_replay(w, r, PHONE, rng), 8000), stored)[0])
    t = settings.replay_threshold
    print(f"threshold {t}")
    for name, scores in replay.items():
        s = np.array(scores)
        caught = np.mean(s >= t) * 100
        print(f"replay {name:50s} n={s.size:3d} caught {caught:5.1f} %  min {s.min():.3f}  median {np.median(s):.3f}")
    f = np.array(fresh)
    matched = np.mean(f >= t) * 100
    print(f"fresh utterances, clean + phone {'':25s} n={f.size:3d} matched {matched:5.1f} %  max {f.max():.3f}")


if __name__ == "__main__":
    main()
