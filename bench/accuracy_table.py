"""The README's accuracy table: EER, minDCF and Cllr per channel and score normalisation,
voiceid next to bare SpeechBrain on the same trials.

Usage: python bench/accuracy_table.py [--manifest M] [--channels clean,g711-ulaw] [--out bench/out/accuracy.json]
Embeddings are cached under the data dir, so a second run only re-scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voiceid.config import get_settings
from voiceid.evaluation.embedders import speechbrain_bare_embedder, voiceid_embedder
from voiceid.evaluation.protocol import build_protocol, read_manifest
from voiceid.evaluation.runner import EmbeddingCache, cross_validated_cllr, embed_run, summarise
from voiceid.verify.normalisation import NORM_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--cohort-manifest", type=Path, default=None)
    parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--embedders", default="speechbrain-bare,voiceid")
    parser.add_argument("--top-n", type=int, default=get_settings().score_top_n)
    parser.add_argument("--out", type=Path, default=Path("bench/out/accuracy.json"))
    args = parser.parse_args()

    settings = get_settings()
    manifest = args.manifest or settings.dev_data_dir / "dev" / "manifest.csv"
    cohort = read_manifest(args.cohort_manifest or settings.dev_data_dir / "dev_cohort" / "manifest.csv")
    protocol = build_protocol(read_manifest(manifest), 3)
    rows: list[dict[str, Any]] = []
    for embedder in args.embedders.split(","):
        embed = voiceid_embedder(settings)[0] if embedder == "voiceid" else speechbrain_bare_embedder(settings)
        cache = EmbeddingCache.for_embedder(settings, embedder)
        for channel in args.channels.split(","):
            run = embed_run(protocol, channel, embed, cache, cohort)
            variants = [("none", "-")] + [(n, c) for n in NORM_METHODS[1:] for c in ("builtin", "population")]
            for norm, source in variants:
                trials = run.trials(norm, args.top_n, source, settings.cohort_size)
                row = {"embedder": embedder, "channel": channel, "norm": norm, "cohort": source, "top_n": args.top_n}
                row.update(summarise(trials.target, trials.nontarget))
                row["cllr"] = cross_validated_cllr(trials)
                rows.append(row)
                print(
                    f"{embedder:17s} {channel:10s} {norm:8s} {source:10s} EER {row['eer'] * 100:5.2f} %  "
                    f"minDCF0.01 {row['min_dcf_0.01']:.3f}  Cllr {row['cllr']:.3f}",
                    file=sys.stderr,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"manifest": str(manifest), "rows": rows}, indent=2) + "\n")
    header = "| embedder | channel | norm | cohort | EER | minDCF (p=0.01) | minDCF (p=0.001) | FNMR @ FMR 1 %"
    print(header + " | Cllr | minCllr |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['embedder']} | {r['channel']} | {r['norm']} | {r['cohort']} | {r['eer'] * 100:.2f} % | "
            f"{r['min_dcf_0.01']:.3f} | "
            f"{r['min_dcf_0.001']:.3f} | {r['fnmr_at_fmr_1pct'] * 100:.2f} % | {r['cllr']:.3f} | {r['min_cllr']:.3f} |"
        )


if __name__ == "__main__":
    main()
