"""CPU per verification through the whole service: the capacity model's main input (docs/deploy.md).

    VOICEID_DEV_DATA_DIR=../shared/data python bench/verification_cost.py [--channel g711-ulaw]

In one process, the HTTP app on a temporary SQLite database with default settings (the `auto`
backend, the spoofing countermeasure on, one inference worker of one thread) except the two a lab
bench must lift (the attempt rate limit and the lockout). `--speakers` dev speakers are enrolled over
HTTP, then each of their later utterances calls as its own speaker. Per call it records the whole
process's CPU time (`time.process_time`: request handling, decode, VAD, embedding, countermeasure,
fingerprint, scoring, database, every background thread) and the wall time. The same calls run twice,
on a fresh app each: with the countermeasure, and with `VOICEID_CM_ENABLED=false`, so its share is
the difference. Measured on the dev set's speech (LibriSpeech-style read English, ~4 s net speech).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import soundfile as sf
from http_harness import bench_app, enrol, role_headers  # bench/http_harness.py: run from bench/ as a script

from voiceid.config import Settings, get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import Utterance, read_manifest


def measure(base: Settings, speakers: dict[str, list[Utterance]], channel: str, cm: bool) -> dict[str, Any]:
    overrides = {"inference_workers": 1, "torch_threads": 1, "cm_enabled": cm}
    # The app builds its own engine, as `voiceid serve` does (backend resolved, CM stage or none).
    with bench_app(base, **overrides) as client:
        model_version = client.app.state.service.engine.model_version  # type: ignore[attr-defined]
        keys = role_headers(client)
        probes: list[tuple[str, Utterance]] = []
        for speaker, utterances in speakers.items():
            used = enrol(client, keys["enrolment"], speaker, utterances, channel)
            if used is not None:
                probes += [(speaker, u) for u in utterances[used:]]
        ivr = keys["ivr"]
        cpu, wall, audio, decisions = [], [], [], []
        for i, (speaker, utt) in enumerate(probes):
            body, ctype = through_channel(utt.path, channel)
            c0, w0 = time.process_time(), time.perf_counter()
            r = client.post(
                f"/v1/speakers/{speaker}/verifications", content=body, headers={**ivr, "Content-Type": ctype}
            )
            c1, w1 = time.process_time(), time.perf_counter()
            if i < 3:
                continue  # warm-up: first calls load lazily built state
            cpu.append(c1 - c0)
            wall.append(w1 - w0)
            audio.append(sf.info(str(utt.path)).duration)
            decisions.append(r.json().get("decision", r.json().get("code")))
    mean_cpu = statistics.fmean(cpu)
    return {
        "cm_enabled": cm,
        "model_version": model_version,
        "calls": len(cpu),
        "audio_s_mean": round(statistics.fmean(audio), 2),
        "cpu_s_per_verification": round(mean_cpu, 4),
        "cpu_s_per_audio_s": round(sum(cpu) / sum(audio), 4),
        "verifications_per_s_per_core": round(1 / mean_cpu, 2),
        "wall_p50_ms": round(float(np.percentile(wall, 50)) * 1000, 1),
        "wall_p95_ms": round(float(np.percentile(wall, 95)) * 1000, 1),
        "decisions": {d: decisions.count(d) for d in sorted(set(map(str, decisions)))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel", default="clean", help="clean | g711-ulaw | g711-alaw")
    parser.add_argument("--speakers", type=int, default=12)
    args = parser.parse_args()
    base = get_settings()
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in read_manifest(base.dev_data_dir / "dev" / "manifest.csv"):
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    speakers = dict(list(by_speaker.items())[: args.speakers])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for cm in (True, False):
        print(json.dumps({"channel": args.channel, **measure(base, speakers, args.channel, cm)}), flush=True)


if __name__ == "__main__":
    main()
