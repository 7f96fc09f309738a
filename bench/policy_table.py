"""The decision policy on the dev set, measured honestly: what callers and impostors get.

For each channel and probe length (single utterances, and --probe-utts 3 joined as a longer call),
two figures:
- `shipped`: the shipped calibration (fitted on this same dev set) and the policy it yields, as
  `voiceid eval` reports it (optimistic: the calibration has seen these speakers);
- `cross-validated`: 2-fold by speaker: the calibration and thresholds are fitted on half the
  speakers (all probe lengths pooled, as `voiceid calibrate` does) and applied to the other half's
  trials, then the folds swap. This is the estimate of what unseen speakers get.
Also the cohort-size study: EER and genuine ACCEPT for cohort sizes C against the enrolled
population's full top-N (the old behaviour).

`--norm` picks the normalisation of the full population's regime (default: the service's, the cosine
centred on the population's mean; `as-norm` for population AS-norm): the shipped calibration of its
fullest regime, and the cross-validated fit on the same scores.

Usage: python bench/policy_table.py [--channels clean,g711-ulaw] [--norm as-norm|centre] [--out bench/out/policy.json]
Embeddings and net speech are cached under the data dir.
"""

from __future__ import annotations

import sys
from typing import Any, cast

import numpy as np

from bench.dev_set import dev_arguments, parse_dev, save_report
from voiceid.evaluation.calibration_fit import PooledTrials
from voiceid.evaluation.operating_point import format_accepts, operating_point, trial_llrs
from voiceid.evaluation.regimes import pool_points
from voiceid.evaluation.runner import TrialScores, summarise
from voiceid.evaluation.verification import probe_speech
from voiceid.verify.calibration import Calibration, load_calibrations, select_calibration
from voiceid.verify.normalisation import NormMethod
from voiceid.verify.policy import BUILTIN_CALIBRATION, policy_from_calibrations


def _rows(trials: TrialScores, speakers: set[str]) -> np.ndarray:
    owner = [trials.speakers[int(np.argmax(r))] if r.any() else "" for r in trials.is_target]
    return np.array([o in speakers for o in owner])


def _fit(parts: list[TrialScores], channel: str, norm: str) -> Calibration:
    """Calibration on the given trial subsets (probes of the fold against voiceprints of the fold)."""
    return PooledTrials.of(parts).fit(channel, norm, "fold", "fold")


def _merge(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the counts of the folds' operating points into rates (evaluation/regimes.pool_points)."""
    out = pool_points(points)
    out["thresholds"] = [(p["accept_threshold"], p["reject_threshold"]) for p in points]
    return out


def main() -> None:
    parser = dev_arguments(__doc__, "bench/out/policy.json")
    parser.add_argument("--cohort-sizes", default="200,1000,5000")
    parser.add_argument("--norm", default=None, choices=("as-norm", "centre"), help="default: the service's")
    args, settings, dev = parse_dev(parser)
    norm = cast(NormMethod, args.norm or settings.score_norm)
    # The default backend's own calibration (the bf16 network's on a CPU with bf16), the fullest regime
    # of the normalisation: the dev protocol's cohort holds the whole population (about 100 voiceprints).
    version = dev.embedding.model_version
    ours = [
        c
        for c in load_calibrations(settings.calibration_file or BUILTIN_CALIBRATION)
        if c.model_version == version and c.norm == norm
    ]
    shipped = {ch: select_calibration([c for c in ours if c.channel == ch], None) for ch in {c.channel for c in ours}}
    speakers = dev.base.speakers
    folds = [set(speakers[0::2]), set(speakers[1::2])]
    report: dict[str, Any] = {
        "manifest": str(dev.manifest),
        "target_fmr": settings.target_fmr,
        "rows": [],
        "cohort": [],
    }
    for channel in args.channels.split(","):
        runs = {}
        for n in sorted({1, 3} | {int(v) for v in args.probe_utts.split(",")}):
            run = dev.run(channel, n)
            runs[n] = (run, run.trials(norm, settings.score_top_n, "population", settings.cohort_size))
        service_channel = runs[1][0].service_channel
        for n in (int(v) for v in args.probe_utts.split(",")):
            trials = runs[n][1]
            llr_pair = None
            row: dict[str, Any] = {"channel": channel, "probe_utts": n, **summarise(trials.target, trials.nontarget)}
            cal = shipped.get(service_channel)
            if cal is not None:
                llr_pair = policy_from_calibrations({service_channel: cal}, settings.target_fmr, settings.target_fnmr)
                llr = trial_llrs(trials.scores, trials.probe_speech_s, cal)
                pair = llr_pair[service_channel]
                row["shipped"] = operating_point(
                    llr, trials.is_target, trials.probe_speech_s, pair, settings.verify_min_speech_s
                )
            # 2-fold by speaker: fit on fold A (all probe lengths pooled), apply to fold B.
            points = []
            for train, test in ((folds[0], folds[1]), (folds[1], folds[0])):
                parts = [
                    t.subset(_rows(t, train), np.array([s in train for s in t.speakers]))
                    for t in (runs[m][1] for m in sorted(runs))
                ]
                fold_cal = _fit(parts, service_channel, norm)
                pair = policy_from_calibrations({service_channel: fold_cal}, settings.target_fmr, settings.target_fnmr)
                held = trials.subset(_rows(trials, test), np.array([s in test for s in trials.speakers]))
                llr = fold_cal.llrs(held.scores, probe_speech(held)[:, None])
                points.append(
                    operating_point(
                        llr, held.is_target, probe_speech(held), pair[service_channel], settings.verify_min_speech_s
                    )
                )
            row["cross_validated"] = _merge(points)
            report["rows"].append(row)
            cv = row["cross_validated"]
            print(
                f"{channel:10s} probe_utts={n}: EER {row['eer'] * 100:.2f} %  "
                + (
                    f"shipped: genuine ACCEPT {row['shipped']['genuine_accept_rate'] * 100:.1f} %  "
                    f"impostor ACCEPT {row['shipped']['impostor_accept_rate'] * 100:.3f} %  "
                    if "shipped" in row
                    else ""
                )
                + f"cross-validated: genuine ACCEPT {cv['genuine_accept_rate'] * 100:.1f} %  "
                f"impostor ACCEPT {cv['impostor_accept_rate'] * 100:.3f} %",
                file=sys.stderr,
            )
        # Cohort size study (single utterances): EER for each C and for the whole population.
        run = runs[1][0]
        for size in [int(v) for v in args.cohort_sizes.split(",") if norm == "as-norm"] + [10**9]:
            trials = run.trials(norm, settings.score_top_n, "population", size)
            label = "whole population" if size == 10**9 else str(size)
            entry = {"channel": channel, "cohort_size": label, **summarise(trials.target, trials.nontarget)}
            report["cohort"].append(entry)
            print(f"{channel:10s} cohort {label:>16s}: EER {entry['eer'] * 100:.2f} %", file=sys.stderr)
    save_report(args.out, report)
    print(
        "| channel | probe | EER | genuine ACCEPT / INCONCL. / REJECT (shipped) | impostor ACCEPT (shipped) "
        "| genuine ACCEPT (cross-validated) | impostor ACCEPT (cross-validated) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in report["rows"]:
        s, cv = r.get("shipped"), r["cross_validated"]
        shipped_cells = (
            f"{s['genuine_accept_rate'] * 100:.1f} / {s['genuine_inconclusive_rate'] * 100:.1f} / "
            f"{s['genuine_reject_rate'] * 100:.1f} % | {s['impostor']['accept']} of {s['impostor']['n']} "
            f"({s['impostor_accept_rate'] * 100:.3f} %)"
            if s
            else "- | -"
        )
        print(
            f"| {r['channel']} | {r['probe_utts']} utt | {r['eer'] * 100:.2f} % | {shipped_cells} | "
            f"{format_accepts(cv, ' | ')} |"
        )


if __name__ == "__main__":
    main()
