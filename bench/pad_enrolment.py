"""Do genuine speakers enrol over the API with the countermeasure on?

    VOICEID_DEV_DATA_DIR=../shared/data python bench/pad_enrolment.py \
        --manifest ../shared/data/dev_8k/manifest.csv --channel g711-ulaw [--held-out-only]

Each speaker of the manifests gets consent, then sends their utterances in manifest order over
HTTP (clean, or G.711 with --channel g711-ulaw) until the answer says the enrolment is done
(`next_step` DONE) or held for an analyst (WAIT_FOR_REVIEW), or the files run out. Default
settings (countermeasure on, the shipped thresholds) with the app's own engine, as `voiceid serve`
builds it. `--held-out-only` keeps the speakers `voiceid calibrate-pad` held out of the threshold fit
(the same stable hash, share 0.3), so the figure is on speakers the thresholds never saw.

Per speaker: files sent, final status, files the CM flagged, files kept out of the voiceprint. The
target (issue 18): every genuine speaker enrols (DONE); none is failed by the countermeasure.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from http_harness import bench_app, role_headers  # bench/http_harness.py: run from bench/ as a script

from voiceid.antispoof.calibration import held_out_speakers
from voiceid.config import get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.pad import PadItem, read_pad_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--channel", default="clean")
    parser.add_argument("--held-out-only", action="store_true")
    parser.add_argument("--holdout-share", type=float, default=0.3)
    parser.add_argument("--max-speakers", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = get_settings()
    items = [i for manifest in args.manifest for i in read_pad_manifest(manifest) if i.is_bonafide]
    kept_out = held_out_speakers({(i.source, i.speaker_id) for i in items}, args.holdout_share)
    by_speaker: dict[str, list[PadItem]] = defaultdict(list)
    for item in items:
        if not args.held_out_only or (item.source, item.speaker_id) in kept_out:
            by_speaker[item.speaker_id].append(item)
    speakers = list(by_speaker)[: args.max_speakers]
    rows: list[dict[str, Any]] = []
    with bench_app(base) as client:
        headers = role_headers(client)["enrolment"]
        for speaker in speakers:
            client.put(
                f"/v1/speakers/{speaker}", json={"consent": {"granted": True, "text_version": "v1"}}, headers=headers
            )
            sent = flagged = held_out = 0
            status, step, codes = "ENROLLING", "SEND_MORE_AUDIO", Counter[str]()
            for item in by_speaker[speaker]:
                body, ctype = through_channel(item.path, args.channel)
                r = client.post(
                    f"/v1/speakers/{speaker}/enrolment-audio", content=body, headers={**headers, "Content-Type": ctype}
                )
                sent += 1
                got = r.json()
                if r.status_code != 200:
                    codes[got.get("code", str(r.status_code))] += 1
                    continue
                cm = got.get("countermeasure") or {}
                flagged += bool(cm.get("flagged"))
                held_out += not cm.get("used", True)
                status, step = got["status"], got["next_step"]
                if step != "SEND_MORE_AUDIO":
                    break
            rows.append(
                {
                    "speaker": speaker,
                    "source": by_speaker[speaker][0].source,
                    "files_sent": sent,
                    "status": status,
                    "next_step": step,
                    "cm_flagged_files": flagged,
                    "kept_out_when_sent": held_out,
                    "errors": dict(codes),
                }
            )
    outcome = Counter(r["next_step"] for r in rows)
    report = {
        "manifests": [str(m) for m in args.manifest],
        "channel": args.channel,
        "held_out_only": args.held_out_only,
        "n_speakers": len(rows),
        "enrolled": outcome["DONE"],
        "held_for_review": outcome["WAIT_FOR_REVIEW"],
        "not_finished": outcome["SEND_MORE_AUDIO"],
        "files_sent": sum(r["files_sent"] for r in rows),
        "cm_flagged_files": sum(r["cm_flagged_files"] for r in rows),
        "speakers": rows,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "speakers"}))
    for r in rows:
        if r["next_step"] != "DONE":
            print(json.dumps(r))


if __name__ == "__main__":
    main()
