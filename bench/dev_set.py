"""What the dev-set bench scripts share: their common options and where their JSON reports go.

from bench.dev_set import dev_arguments, save_report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from voiceid.config import Settings, get_settings
from voiceid.evaluation.verification import EvaluationSet


def dev_arguments(doc: str | None, out: str, channels: bool = True) -> argparse.ArgumentParser:
    """--manifest (default: the dev set), --channels (unless `channels` is False), --probe-utts, --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None, help="default: <dev data>/dev/manifest.csv")
    if channels:
        parser.add_argument("--channels", default="clean,g711-ulaw")
    parser.add_argument("--probe-utts", default="1,3")
    parser.add_argument("--out", type=Path, default=Path(out))
    return parser


def parse_dev(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Settings, EvaluationSet]:
    """The options, the settings and the evaluation set (--manifest or the dev set, the dev cohort, the
    product's embedder)."""
    args = parser.parse_args()
    settings = get_settings()
    return args, settings, EvaluationSet.dev(settings, args.manifest)


def save_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
