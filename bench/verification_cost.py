"""CPU per verification through the whole service: the capacity model's main input (docs/deploy.md).

    VOICEID_DEV_DATA_DIR=../shared/data python bench/verification_cost.py [--channel g711-ulaw] [--impostors]

In one process, the HTTP app on a temporary SQLite database with default settings (the `auto`
backends, the spoofing countermeasure on, one inference worker of one thread) except the two a lab
bench must lift (the attempt rate limit and the lockout). `--speakers` dev speakers are enrolled over
HTTP, then each of their later utterances calls as its own speaker. Per call it records the whole
process's CPU time (`time.process_time`: request handling, decode, VAD, embedding, countermeasure,
fingerprint, scoring, database, every background thread) and the wall time. Measured on the dev
set's speech (speechocean762 and LibriSpeech read English).

The configurations run side by side, each on its own fresh app, and **interleaved call by call**
(the same call to each app in turn, the order rotating), so a machine shared with other jobs loads
them alike and the ratios hold even where the absolute times do not: the countermeasure on with the
default runtime (VOICEID_CM_RUNTIME=auto), on with each `--compare-runtime` (e.g. `manifest`, the
ONNX Runtime fp32 reference), and off (`VOICEID_CM_ENABLED=false`).

`--impostors` also calls each utterance against another enrolled speaker's id (REJECT on the voice,
where the service skips the countermeasure), and the cost is given per kind of call; the last lines
are the ratios CM on / CM off (target 1.5). `--cm-max-windows` sets VOICEID_CM_MAX_WINDOWS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient
from http_harness import bench_app, enrol, role_headers  # bench/http_harness.py: run from bench/ as a script

from voiceid.config import CmRuntime, Settings, get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import Utterance, read_manifest

WARM_UP = 3  # first calls of each app load lazily built state


@dataclass
class Config:
    name: str
    overrides: dict[str, Any]
    client: TestClient | None = None
    ivr: dict[str, str] = field(default_factory=dict)
    probes: list[tuple[str, Utterance, str]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    audio: list[float] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def setup(config: Config, speakers: dict[str, list[Utterance]], channel: str, impostors: bool) -> None:
    assert config.client is not None
    keys = role_headers(config.client)
    enrolled: list[str] = []
    for speaker, utterances in speakers.items():
        used = enrol(config.client, keys["enrolment"], speaker, utterances, channel)
        if used is not None:
            config.probes += [(speaker, u, "genuine") for u in utterances[used:]]
            enrolled.append(speaker)
    if impostors:
        # Each genuine call is also made against the next enrolled speaker's id: a REJECT on the
        # voice, where the countermeasure is skipped (it cannot change the decision).
        claim = {s: enrolled[(i + 1) % len(enrolled)] for i, s in enumerate(enrolled)}
        config.probes += [(claim[s], u, "impostor") for s, u, _ in list(config.probes)]
    config.ivr = keys["ivr"]


def call(config: Config, i: int, channel: str) -> None:
    assert config.client is not None
    speaker, utt, kind = config.probes[i]
    body, ctype = through_channel(utt.path, channel)
    c0, w0 = time.process_time(), time.perf_counter()
    r = config.client.post(
        f"/v1/speakers/{speaker}/verifications", content=body, headers={**config.ivr, "Content-Type": ctype}
    )
    c1, w1 = time.process_time(), time.perf_counter()
    if i < WARM_UP:
        return
    config.cpu.append(c1 - c0)
    config.wall.append(w1 - w0)
    config.audio.append(sf.info(str(utt.path)).duration)
    config.decisions.append(str(r.json().get("decision", r.json().get("code"))))
    config.kinds.append(kind)


def summary(config: Config) -> dict[str, Any]:
    assert config.client is not None
    cpu, kinds = config.cpu, config.kinds
    by_kind = {
        k: round(statistics.fmean([c for c, kk in zip(cpu, kinds, strict=True) if kk == k]), 4)
        for k in sorted(set(kinds))
    }
    engine = config.client.app.state.service.engine  # type: ignore[attr-defined]
    pad = getattr(engine, "pad", None)
    scorer = getattr(pad, "scorer", None)
    return {
        "config": config.name,
        "cm_runtime": None if scorer is None else type(scorer.cm).__name__,
        "model_version": engine.model_version,
        "cpu_s_per_verification_by_kind": by_kind,
        "calls": len(cpu),
        "audio_s_mean": round(statistics.fmean(config.audio), 2),
        "cpu_s_per_verification": round(statistics.fmean(cpu), 4),
        "cpu_s_per_audio_s": round(sum(cpu) / sum(config.audio), 4),
        "verifications_per_s_per_core": round(1 / statistics.fmean(cpu), 2),
        "wall_p50_ms": round(float(np.percentile(config.wall, 50)) * 1000, 1),
        "wall_p95_ms": round(float(np.percentile(config.wall, 95)) * 1000, 1),
        "decisions": {d: config.decisions.count(d) for d in sorted(set(config.decisions))},
    }


def measure(
    base: Settings,
    speakers: dict[str, list[Utterance]],
    channel: str,
    configs: list[Config],
    impostors: bool,
) -> list[dict[str, Any]]:
    with ExitStack() as stack:
        # Each app builds its own engine, as `voiceid serve` does (backend resolved, CM stage or none).
        for config in configs:
            config.client = stack.enter_context(bench_app(base, **config.overrides))
            setup(config, speakers, channel, impostors)
        n = len(configs[0].probes)
        for i in range(n):
            for k in range(len(configs)):
                call(configs[(i + k) % len(configs)], i, channel)
        return [summary(c) for c in configs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel", default="clean", help="clean | g711-ulaw | g711-alaw")
    parser.add_argument("--speakers", type=int, default=12)
    parser.add_argument("--impostors", action="store_true", help="also call each utterance against another id")
    parser.add_argument("--cm-max-windows", type=int, default=None, help="default: VOICEID_CM_MAX_WINDOWS")
    parser.add_argument(
        "--compare-runtime",
        action="append",
        default=[],
        choices=[str(r) for r in CmRuntime if r != CmRuntime.AUTO],
        help="also run the CM on this runtime (repeatable), e.g. manifest: the ONNX Runtime fp32 reference",
    )
    args = parser.parse_args()
    base = get_settings()
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in read_manifest(base.dev_data_dir / "dev" / "manifest.csv"):
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    speakers = dict(list(by_speaker.items())[: args.speakers])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}")
    windows = args.cm_max_windows or base.cm_max_windows
    common = {"inference_workers": 1, "torch_threads": 1, "cm_max_windows": windows}
    configs = [Config("cm_on", {**common, "cm_enabled": True, "cm_runtime": base.cm_runtime})]
    configs += [
        Config(f"cm_on_{r}", {**common, "cm_enabled": True, "cm_runtime": CmRuntime(r)}) for r in args.compare_runtime
    ]
    configs.append(Config("cm_off", {**common, "cm_enabled": False}))
    results = {r["config"]: r for r in measure(base, speakers, args.channel, configs, args.impostors)}
    for r in results.values():
        print(json.dumps({"channel": args.channel, "cm_max_windows": windows, **r}), flush=True)
    off = results["cm_off"]
    for name, on in results.items():
        if name == "cm_off":
            continue
        ratios = {
            k: round(on["cpu_s_per_verification_by_kind"][k] / v, 2)
            for k, v in off["cpu_s_per_verification_by_kind"].items()
        }
        ratio = round(on["cpu_s_per_verification"] / off["cpu_s_per_verification"], 2)
        print(json.dumps({"config": name, "cm_on_over_off": ratio, "by_kind": ratios, "target": 1.5}), flush=True)
    print(f"# load at the end {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
