"""Does the self-calibration hold the FMR target on a population unlike the one the calibration saw?

The dev set holds two populations: adults and children (speechocean762, age column). The calibration
is fitted on the adults only (the raw-cosine regime, as a deployment under 100 callers uses); the
children are then decided with that adult calibration ("shipped") and with the self-calibration
fitted the way the worker fits it on the children's own enrolment audio, 2 folds by speaker
(voiceid/evaluation/regimes.py: the fit never sees either speaker of a trial it decides).

Usage: python bench/population_shift.py [--channels clean,g711-ulaw] [--out bench/out/population_shift.json]
Embeddings are cached under the data dir.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from voiceid.config import get_settings
from voiceid.evaluation.embedders import speech_meter, voiceid_embedder
from voiceid.evaluation.protocol import build_protocol, join_tests, read_manifest
from voiceid.evaluation.regimes import Regime, policy_by_calibration
from voiceid.evaluation.runner import EmbeddingCache, embed_run
from voiceid.models.registry import backend_model_version
from voiceid.verify.calibration import fit_calibration
from voiceid.verify.normalisation import NormMethod
from voiceid.verify.policy import thresholds_by_calibration


def subset(manifest: Path, keep: Any, out: Path) -> Path:
    """A manifest of the rows `keep` accepts, with absolute paths (read_manifest resolves them as is)."""
    with manifest.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if keep(r)]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "path": str(manifest.parent / row["path"])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--probe-utts", default="1,3")
    parser.add_argument("--out", type=Path, default=Path("bench/out/population_shift.json"))
    args = parser.parse_args()
    settings = get_settings()
    dev = settings.dev_data_dir / "dev" / "manifest.csv"
    tmp = Path(tempfile.mkdtemp())
    adults = subset(dev, lambda r: r["age"] != "" and int(r["age"]) >= 16, tmp / "adults.csv")
    children = subset(dev, lambda r: r["age"] != "" and int(r["age"]) < 16, tmp / "children.csv")
    embed, speech = voiceid_embedder(settings)[0], speech_meter(settings)
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    cohort = read_manifest(settings.dev_data_dir / "dev_cohort" / "manifest.csv")
    version = backend_model_version(settings.model_dir, settings.inference_backend)
    rows: list[dict[str, Any]] = []
    for channel in args.channels.split(","):
        # The raw-cosine regime only: an adult AS-norm calibration read on a children population would also
        # change regime (another cohort size), which is the other half of issue 19, not this question.
        for norm in ("none",):
            # The adult calibration, on adult trials pooled over the probe lengths (as `voiceid calibrate`).
            s, p, t = [], [], []
            for n in (1, 3):
                run = embed_run(
                    join_tests(build_protocol(read_manifest(adults), 3), n),
                    channel,
                    embed,
                    cache,
                    cohort,
                    speech=speech,
                )
                trials = run.trials(cast(NormMethod, norm), settings.score_top_n, "population", settings.cohort_size)
                s.append(trials.scores.ravel())
                p.append(np.broadcast_to(trials.probe_speech_s[:, None], trials.scores.shape).ravel())
                t.append(trials.is_target.ravel())
            scores, probe, is_t = (np.concatenate(x) for x in (s, p, t))
            adult = fit_calibration(
                scores[is_t],
                scores[~is_t],
                target_probe_s=probe[is_t],
                nontarget_probe_s=probe[~is_t],
                channel=run.service_channel,
                norm=norm,
                model_version=version,
                fitted_on="adults",
            )
            pair = thresholds_by_calibration({adult.channel: [adult]}, settings.target_fmr, settings.target_fnmr)
            regime = Regime(adult, pair[adult.calibration_id], None)
            for n in (int(v) for v in args.probe_utts.split(",")):
                run = embed_run(
                    join_tests(build_protocol(read_manifest(children), 3), n),
                    channel,
                    embed,
                    cache,
                    cohort,
                    speech=speech,
                )
                point = policy_by_calibration(run, regime, settings)
                row = {"channel": channel, "norm": norm, "probe_utts": n, **point}
                rows.append(row)
                by = point["by_calibration"]
                print(
                    f"{channel:10s} {norm:8s} probe_utts={n}: "
                    + "  ".join(
                        f"{name}: genuine ACCEPT {by[name]['genuine_accept_rate'] * 100:.1f} % impostor ACCEPT "
                        f"{by[name]['impostor']['accept']}/{by[name]['impostor']['n']} "
                        f"({by[name]['impostor_accept_rate'] * 100:.3f} %)"
                        for name in ("shipped", "self")
                    ),
                    file=sys.stderr,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "target_fmr": settings.target_fmr}, indent=2) + "\n")
    print("| channel | scores | probe | adult calibration on children: genuine / impostor ACCEPT | self-calibrated |")
    print("|---|---|---|---:|---:|")
    for r in rows:
        by = r["by_calibration"]
        cells = [
            f"{by[k]['genuine_accept_rate'] * 100:.1f} % / {by[k]['impostor']['accept']} of {by[k]['impostor']['n']} "
            f"({by[k]['impostor_accept_rate'] * 100:.3f} %)"
            for k in ("shipped", "self")
        ]
        print(f"| {r['channel']} | {r['norm']} | {r['probe_utts']} utt | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
