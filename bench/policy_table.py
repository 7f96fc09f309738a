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

Usage: python bench/policy_table.py [--channels clean,g711-ulaw] [--out bench/out/policy.json]
Embeddings and net speech are cached under the data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from voiceid.config import get_settings
from voiceid.evaluation.embedders import speech_meter, voiceid_embedder
from voiceid.evaluation.operating_point import operating_point, trial_llrs
from voiceid.evaluation.protocol import build_protocol, join_tests, read_manifest
from voiceid.evaluation.regimes import pool_points
from voiceid.evaluation.runner import EmbeddingCache, TrialScores, embed_run, summarise
from voiceid.models.registry import backend_model_version
from voiceid.verify.calibration import fit_calibration, load_calibrations
from voiceid.verify.policy import BUILTIN_CALIBRATION, policy_from_calibrations


def _rows(trials: TrialScores, speakers: set[str]) -> np.ndarray:
    owner = [trials.speakers[int(np.argmax(r))] if r.any() else "" for r in trials.is_target]
    return np.array([o in speakers for o in owner])


def _fit(parts: list[tuple[TrialScores, np.ndarray, np.ndarray]], channel: str) -> Any:
    """Calibration on the given trial subsets (rows = probes of the fold, cols = voiceprints of the fold)."""
    s, p, t = [], [], []
    for trials, rows, cols in parts:
        sub = trials.scores[np.ix_(rows, cols)]
        s.append(sub.ravel())
        p.append(np.broadcast_to(trials.probe_speech_s[rows][:, None], sub.shape).ravel())
        t.append(trials.is_target[np.ix_(rows, cols)].ravel())
    scores, probe, is_t = (np.concatenate(x) for x in (s, p, t))
    return fit_calibration(
        scores[is_t],
        scores[~is_t],
        target_probe_s=probe[is_t],
        nontarget_probe_s=probe[~is_t],
        channel=channel,
        norm="as-norm",
        model_version="fold",
        fitted_on="fold",
    )


def _merge(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the counts of the folds' operating points into rates (evaluation/regimes.pool_points)."""
    out = pool_points(points)
    out["thresholds"] = [(p["accept_threshold"], p["reject_threshold"]) for p in points]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--probe-utts", default="1,3")
    parser.add_argument("--cohort-sizes", default="200,1000,5000")
    parser.add_argument("--out", type=Path, default=Path("bench/out/policy.json"))
    args = parser.parse_args()

    settings = get_settings()
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    cohort = read_manifest(settings.dev_data_dir / "dev_cohort" / "manifest.csv")
    base = build_protocol(read_manifest(manifest), 3)
    embed = voiceid_embedder(settings)[0]
    speech = speech_meter(settings)
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    # The default backend's own calibration (the bf16 network's on a CPU with bf16), its population
    # AS-norm regime: the dev protocol's cohort holds the whole population (about 100 voiceprints).
    version = backend_model_version(settings.model_dir, settings.inference_backend)
    shipped = {
        (c.channel, c.norm): c
        for c in load_calibrations(BUILTIN_CALIBRATION)
        if c.model_version == version and c.norm == "as-norm"
    }
    speakers = base.speakers
    folds = [set(speakers[0::2]), set(speakers[1::2])]
    report: dict[str, Any] = {"manifest": str(manifest), "target_fmr": settings.target_fmr, "rows": [], "cohort": []}
    for channel in args.channels.split(","):
        runs = {}
        for n in sorted({1, 3} | {int(v) for v in args.probe_utts.split(",")}):
            run = embed_run(join_tests(base, n), channel, embed, cache, cohort, speech=speech)
            runs[n] = (run, run.trials("as-norm", settings.score_top_n, "population", settings.cohort_size))
        service_channel = runs[1][0].service_channel
        for n in (int(v) for v in args.probe_utts.split(",")):
            trials = runs[n][1]
            llr_pair = None
            row: dict[str, Any] = {"channel": channel, "probe_utts": n, **summarise(trials.target, trials.nontarget)}
            cal = shipped.get((service_channel, "as-norm"))
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
                parts = []
                for m in sorted(runs):
                    t = runs[m][1]
                    parts.append((t, _rows(t, train), np.array([s in train for s in t.speakers])))
                fold_cal = _fit(parts, service_channel)
                pair = policy_from_calibrations({service_channel: fold_cal}, settings.target_fmr, settings.target_fnmr)
                rows, cols = _rows(trials, test), np.array([s in test for s in trials.speakers])
                sub = trials.scores[np.ix_(rows, cols)]
                llr = fold_cal.llrs(sub, trials.probe_speech_s[rows][:, None])
                points.append(
                    operating_point(
                        llr,
                        trials.is_target[np.ix_(rows, cols)],
                        trials.probe_speech_s[rows],
                        pair[service_channel],
                        settings.verify_min_speech_s,
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
        for size in [int(v) for v in args.cohort_sizes.split(",")] + [10**9]:
            trials = run.trials("as-norm", settings.score_top_n, "population", size)
            label = "whole population" if size == 10**9 else str(size)
            entry = {"channel": channel, "cohort_size": label, **summarise(trials.target, trials.nontarget)}
            report["cohort"].append(entry)
            print(f"{channel:10s} cohort {label:>16s}: EER {entry['eer'] * 100:.2f} %", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
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
            f"{cv['genuine_accept_rate'] * 100:.1f} % | {cv['impostor']['accept']} of {cv['impostor']['n']} "
            f"({cv['impostor_accept_rate'] * 100:.3f} %) |"
        )


if __name__ == "__main__":
    main()
