"""The decision policy by deployment size: what a service with N enrolled callers decides.

For each channel, probe length and population size N, the dev trials are scored as the service scores
them with N callers enrolled (each claimed speaker's cohort holds at most N - 1 enrolled voiceprints,
topped up from the shipped LibriSpeech cohort; voiceid/evaluation/regimes.py) and decided:

- `regimes` (today): the calibration of the regime N falls in (raw cosine below the first normalised
  regime, population AS-norm from it on), with that regime's thresholds;
- `one calibration` (before issue 19): population AS-norm at every size with the one calibration fitted
  on the whole dev population: what a new deployment met until its cohort held ~100 callers.

N = 1 is a deployment whose first caller calls back (no other voiceprint in the cohort). `all` is the
whole manifest (the dev protocol of the README's tables). Dev speakers are the calibration's own: the
figures are optimistic in level, but the regime effect is what they show.

Usage: python bench/regimes.py [--channels clean,g711-ulaw] [--populations 1,10,30,100,all]
Embeddings are cached under the data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voiceid.config import get_settings
from voiceid.evaluation.embedders import speech_meter, voiceid_embedder
from voiceid.evaluation.operating_point import operating_point, trial_llrs
from voiceid.evaluation.protocol import build_protocol, join_tests, read_manifest
from voiceid.evaluation.regimes import Regime, regime_for, regime_trials
from voiceid.evaluation.runner import EmbeddingCache, embed_run
from voiceid.models.registry import backend_model_version
from voiceid.verify.calibration import load_calibrations, select_calibration
from voiceid.verify.policy import BUILTIN_CALIBRATION, channel_regimes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--probe-utts", default="1,3")
    parser.add_argument("--populations", default="1,10,30,100,all")
    parser.add_argument("--out", type=Path, default=Path("bench/out/regimes.json"))
    args = parser.parse_args()
    settings = get_settings()
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    base = build_protocol(read_manifest(manifest), 3)
    cohort = read_manifest(settings.dev_data_dir / "dev_cohort" / "manifest.csv")
    embed, speech = voiceid_embedder(settings)[0], speech_meter(settings)
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    version = backend_model_version(settings.model_dir, settings.inference_backend)
    calibrations = [c for c in load_calibrations(settings.calibration_file or BUILTIN_CALIBRATION)]
    rows: list[dict[str, Any]] = []
    for channel in args.channels.split(","):
        for n in (int(v) for v in args.probe_utts.split(",")):
            run = embed_run(join_tests(base, n), channel, embed, cache, cohort, speech=speech)
            regimes = channel_regimes(
                [c for c in calibrations if c.channel == run.service_channel and c.model_version == version],
                settings.score_norm,
            )
            fullest = select_calibration(regimes, None)
            for label in args.populations.split(","):
                population = None if label == "all" else int(label)
                today = regime_for(regimes, settings, population)
                before = Regime(fullest, regime_for(regimes, settings, None).thresholds, population)
                row: dict[str, Any] = {"channel": channel, "probe_utts": n, "population": label}
                for name, regime in (("regimes", today), ("one_calibration", before)):
                    trials = regime_trials(run, regime, settings)
                    llr = trial_llrs(trials.scores, trials.probe_speech_s, regime.calibration)
                    point = operating_point(
                        llr, trials.is_target, trials.probe_speech_s, regime.thresholds, settings.verify_min_speech_s
                    )
                    row[name] = {"calibration": regime.calibration.calibration_id, **point}
                rows.append(row)
                print(
                    f"{channel:10s} {n} utt N={label:>4s}: "
                    + "  ".join(
                        f"{name}: genuine {row[name]['genuine_accept_rate'] * 100:.1f} % impostor "
                        f"{row[name]['impostor_accept_rate'] * 100:.3f} %"
                        for name in ("regimes", "one_calibration")
                    ),
                    file=sys.stderr,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "target_fmr": settings.target_fmr}, indent=2) + "\n")
    print("| channel | probe | callers | regime | genuine ACCEPT | impostor ACCEPT | before: genuine / impostor |")
    print("|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        t, b = r["regimes"], r["one_calibration"]
        print(
            f"| {r['channel']} | {r['probe_utts']} utt | {r['population']} | {t['calibration'].split('/')[1]} | "
            f"{t['genuine_accept_rate'] * 100:.1f} % | {t['impostor']['accept']} of {t['impostor']['n']} "
            f"({t['impostor_accept_rate'] * 100:.3f} %) | {b['genuine_accept_rate'] * 100:.1f} % / "
            f"{b['impostor_accept_rate'] * 100:.3f} % |"
        )


if __name__ == "__main__":
    main()
