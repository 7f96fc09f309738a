"""Replay-detection figures on dev speech: simulated re-recordings vs fresh utterances of the same speaker.

    nice -n 10 python bench/replay.py [--speakers 105] [--sources 2]

For each speaker, the first --sources utterances each stand for enrolment audio. Replays: that file
(and its middle half) played through simulated loudspeaker + room + G.711 + noise channels, mild to
harsh. Fresh calls: every other utterance of the same speaker against each of the speaker's files,
clean and over a simulated handset + G.711 line: the comparisons a genuine caller's new call meets.
Prints the share of replays caught and of fresh comparisons falsely matched at
VOICEID_REPLAY_THRESHOLD, and the fresh comparisons' upper tail (a call is compared with up to
VOICEID_REPLAY_MAX_FINGERPRINTS stored recordings, so the per-comparison rate is what must be tiny).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from voiceid.antispoof.fingerprint import Fingerprint, fingerprint, match_score
from voiceid.antispoof.replay_sim import ReplayChannel, simulate_replay
from voiceid.audio import g711
from voiceid.audio.phone_line import Law, phone_line
from voiceid.config import get_settings

CHANNELS = {
    "mild (rt60 0.3 s, SNR 25 dB)": ReplayChannel(rt60_s=0.3, snr_db=25.0),
    "typical (rt60 0.4 s, SNR 20 dB)": ReplayChannel(),
    "harsh (rt60 0.7 s, SNR 10 dB, A-law)": ReplayChannel(rt60_s=0.7, snr_db=10.0, direct_to_reverb_db=0.0, law="alaw"),
}
PHONE = ReplayChannel(rt60_s=0.05, direct_to_reverb_db=20.0, snr_db=30.0)


def ulaw_line(wave: np.ndarray, rate: int) -> np.ndarray:
    """The audio as a G.711 µ-law line delivers it (8 kHz, companded), with no room in between."""
    return g711.decode(phone_line(wave, rate, Law.ULAW)[0], Law.ULAW.value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=105)
    parser.add_argument("--sources", type=int, default=2, help="files per speaker replayed")
    parser.add_argument("--out", type=Path, default=Path("bench/out/replay.json"))
    args = parser.parse_args()
    settings = get_settings()
    dev = settings.dev_data_dir / "dev"
    files: dict[str, list[Path]] = defaultdict(list)
    with (dev / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            files[row["speaker_id"]].append(dev / row["path"])
    rng = np.random.default_rng(3)
    replay: dict[str, list[float]] = defaultdict(list)
    fresh: list[float] = []
    fresh_line: list[float] = []  # both sides over one G.711 line: how an IVR's enrolment and calls arrive
    for speaker in sorted(files)[: args.speakers]:
        waves = [sf.read(str(p), dtype="float32") for p in files[speaker]]
        stored = [fingerprint(w, r) for w, r in waves]
        phone: list[Fingerprint] = [fingerprint(simulate_replay(w, r, PHONE, rng), 8000) for w, r in waves]
        line: list[Fingerprint] = [fingerprint(ulaw_line(w, r), 8000) for w, r in waves]
        for i, j in itertools.permutations(range(len(stored)), 2):
            fresh.append(match_score(stored[i], stored[j]))
            fresh.append(match_score(phone[i], stored[j]))
            fresh_line.append(match_score(line[i], line[j]))
        for k in range(min(args.sources, len(waves))):
            wave, rate = waves[k]
            for name, channel in CHANNELS.items():
                whole = fingerprint(simulate_replay(wave, rate, channel, rng), 8000)
                replay[name].append(match_score(whole, stored[k]))
                half = wave[len(wave) // 4 : 3 * len(wave) // 4]
                excerpt = fingerprint(simulate_replay(half, rate, channel, rng), 8000)
                replay[name + ", half excerpt"].append(match_score(excerpt, stored[k]))
    t = settings.replay_threshold
    report: dict[str, object] = {"threshold": t, "replays": {}, "fresh": {}}
    print(f"threshold {t}")
    for name, scores in replay.items():
        s = np.array(scores)
        caught = float(np.mean(s >= t) * 100)
        report["replays"][name] = {"n": int(s.size), "caught_pct": round(caught, 1), "median": float(np.median(s))}  # type: ignore[index]
        print(f"replay {name:50s} n={s.size:4d} caught {caught:5.1f} %  min {s.min():.3f}  median {np.median(s):.3f}")
    for name, values in (("clean + handset vs clean", fresh), ("G.711 vs G.711", fresh_line)):
        f = np.array(values)
        matched = int(np.sum(f >= t))
        tail = {q: float(np.percentile(f, q)) for q in (99.0, 99.9, 99.99)}
        report["fresh"][name] = {"n": int(f.size), "matched": matched, "max": float(f.max()), "percentiles": tail}  # type: ignore[index]
        print(
            f"fresh comparisons, {name:32s} n={f.size:5d} matched {matched} ({matched / f.size * 100:.3f} %)"
            f"  p99.9 {tail[99.9]:.3f}  max {f.max():.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
