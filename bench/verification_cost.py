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

`--impostors` also calls each utterance against another enrolled speaker's id (REJECT on the voice,
where the service skips the countermeasure), and the cost is given per kind of call; the last line is
the ratio CM on / CM off (target 1.5). `--cm-max-windows` sets VOICEID_CM_MAX_WINDOWS for the run.
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


def measure(
    base: Settings, speakers: dict[str, list[Utterance]], channel: str, cm: bool, impostors: bool, cm_max_windows: int
) -> dict[str, Any]:
    overrides = {"inference_workers": 1, "torch_threads": 1, "cm_enabled": cm, "cm_max_windows": cm_max_windows}
    # The app builds its own engine, as `voiceid serve` does (backend resolved, CM stage or none).
    with bench_app(base, **overrides) as client:
        model_version = client.app.state.service.engine.model_version  # type: ignore[attr-defined]
        keys = role_headers(client)
        probes: list[tuple[str, Utterance, str]] = []
        enrolled: list[str] = []
        for speaker, utterances in speakers.items():
            used = enrol(client, keys["enrolment"], speaker, utterances, channel)
            if used is not None:
                probes += [(speaker, u, "genuine") for u in utterances[used:]]
                enrolled.append(speaker)
        if impostors:
            # Each genuine call is also made against the next enrolled speaker's id: a REJECT on the
            # voice, where the countermeasure is skipped (it cannot change the decision).
            claim = {s: enrolled[(i + 1) % len(enrolled)] for i, s in enumerate(enrolled)}
            probes += [(claim[s], u, "impostor") for s, u, _ in list(probes)]
        ivr = keys["ivr"]
        cpu, wall, audio, decisions, kinds = [], [], [], [], []
        for i, (speaker, utt, kind) in enumerate(probes):
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
            kinds.append(kind)
    mean_cpu = statistics.fmean(cpu)
    by_kind = {
        k: round(statistics.fmean([c for c, kk in zip(cpu, kinds, strict=True) if kk == k]), 4)
        for k in sorted(set(kinds))
    }
    return {
        "cm_enabled": cm,
        "cm_max_windows": cm_max_windows,
        "cpu_s_per_verification_by_kind": by_kind,
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
    parser.add_argument("--impostors", action="store_true", help="also call each utterance against another id")
    parser.add_argument("--cm-max-windows", type=int, default=None, help="default: VOICEID_CM_MAX_WINDOWS")
    args = parser.parse_args()
    base = get_settings()
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in read_manifest(base.dev_data_dir / "dev" / "manifest.csv"):
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    speakers = dict(list(by_speaker.items())[: args.speakers])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    windows = args.cm_max_windows or base.cm_max_windows
    results = {}
    for cm in (True, False):
        results[cm] = measure(base, speakers, args.channel, cm, args.impostors, windows)
        print(json.dumps({"channel": args.channel, **results[cm]}), flush=True)
    on, off = results[True], results[False]
    ratios = {
        k: round(on["cpu_s_per_verification_by_kind"][k] / v, 2)
        for k, v in off["cpu_s_per_verification_by_kind"].items()
    }
    ratio = round(on["cpu_s_per_verification"] / off["cpu_s_per_verification"], 2)
    print(json.dumps({"cm_on_over_off": ratio, "by_kind": ratios, "target": 1.5}), flush=True)


if __name__ == "__main__":
    main()
