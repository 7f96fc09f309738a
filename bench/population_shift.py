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

import csv
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

from bench.dev_set import dev_arguments, save_report
from voiceid.config import get_settings
from voiceid.evaluation.calibration_fit import PooledTrials
from voiceid.evaluation.operating_point import format_accepts
from voiceid.evaluation.protocol import join_tests
from voiceid.evaluation.regimes import Regime, policy_by_calibration
from voiceid.evaluation.verification import Embedding, default_cohort_manifest, read_cohort, read_protocol
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
    args = dev_arguments(__doc__, "bench/out/population_shift.json").parse_args()
    settings = get_settings()
    dev = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    tmp = Path(tempfile.mkdtemp())
    adults = subset(dev, lambda r: r["age"] != "" and int(r["age"]) >= 16, tmp / "adults.csv")
    children = subset(dev, lambda r: r["age"] != "" and int(r["age"]) < 16, tmp / "children.csv")
    adult_base, child_base = read_protocol(adults, 3), read_protocol(children, 3)
    embedding = Embedding.from_settings(settings)
    cohort = read_cohort(default_cohort_manifest(settings))
    rows: list[dict[str, Any]] = []
    for channel in args.channels.split(","):
        # The raw-cosine regime only: an adult AS-norm calibration read on a children population would also
        # change regime (another cohort size), which is the other half of issue 19, not this question.
        for norm in ("none",):
            # The adult calibration, on adult trials pooled over the probe lengths (as `voiceid calibrate`).
            runs = [embedding.run(join_tests(adult_base, n), channel, cohort) for n in (1, 3)]
            pooled = PooledTrials.of(
                run.trials(cast(NormMethod, norm), settings.score_top_n, "population", settings.cohort_size)
                for run in runs
            )
            adult = pooled.fit(runs[0].service_channel, norm, embedding.model_version, "adults")
            pair = thresholds_by_calibration({adult.channel: [adult]}, settings.target_fmr, settings.target_fnmr)
            regime = Regime(adult, pair[adult.calibration_id], None)
            for n in (int(v) for v in args.probe_utts.split(",")):
                run = embedding.run(join_tests(child_base, n), channel, cohort)
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
    save_report(args.out, {"rows": rows, "target_fmr": settings.target_fmr})
    print("| channel | scores | probe | adult calibration on children: genuine / impostor ACCEPT | self-calibrated |")
    print("|---|---|---|---:|---:|")
    for r in rows:
        by = r["by_calibration"]
        cells = [format_accepts(by[k]) for k in ("shipped", "self")]
        print(f"| {r['channel']} | {r['norm']} | {r['probe_utts']} utt | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
