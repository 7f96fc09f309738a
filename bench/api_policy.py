"""Genuine and impostor callers through the HTTP API with the default decision policy.

Each dev speaker is enrolled over HTTP with their first utterances (clean, or G.711 with
--channel g711-ulaw) until ENROLLED; then every later utterance calls as that speaker (genuine),
and the same utterance calls once more as each of the next --impostors speakers (impostor). The
decisions are the service's own, through the API, with default settings except two that a lab
bench must lift: the per-speaker attempt rate limit and the lockout (every account here takes
about 14 calls in a minute, half of them impostors). Each file is embedded once and the vector
reused for its impostor call (the service would compute the same vector twice).

The calls come right after enrolment, with no background job run (as a new deployment meets them);
--refresh runs the worker's cohort refresh and self-calibration first.

--retry plays the IVR of docs/decision-policy.md: a call INCONCLUSIVE for lack of evidence
(SCORE_BETWEEN_THRESHOLDS / INSUFFICIENT_SPEECH) is retried once with more speech, the call so far
joined with the speaker's next utterance, sent with ?retry_of= (decided at the stricter retry
threshold). Impostor calls get the same retry. The report keeps the first answers and adds `after_retry`.
An utterance a retry used is not called again on its own (it would be a replay of audio heard), so
the first-try counts of a --retry run cover fewer calls than a run without it.

Usage: python bench/api_policy.py [--channel clean] [--speakers 105] [--impostors 1] [--refresh] [--retry]
                                  [--out ...]
Measured on the dev set, whose speakers the shipped calibration was fitted on: optimistic.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from http_harness import bench_app, enrol, role_headers  # bench/http_harness.py: run from bench/ as a script

from voiceid.config import get_settings
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import read_manifest
from voiceid.services.retries import RETRYABLE_REASONS, SCORE_REASONS  # the service's rule, as the IVR reads it
from voiceid.verify.calibration import band_labels, band_of
from voiceid.worker.jobs import refit_self_calibration


class MemoEngine:
    """The real engine, embedding each distinct body once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.model_version = engine.model_version
        self.front_end = engine.front_end
        self.memo: dict[bytes, EmbeddedUtterance] = {}

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        if data not in self.memo:
            self.memo[data] = self.engine.analyse(data, content_type)
        return self.memo[data]

    def embed_phone_view(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        return self.engine.embed_phone_view(data, content_type)  # enrolment only: each body once anyway


def retryable(answer: dict[str, Any]) -> bool:
    """What the IVR of docs/decision-policy.md retries with more speech: INCONCLUSIVE for lack of evidence only."""
    reasons = set(answer.get("reasons") or [])
    return (
        answer.get("decision") == "INCONCLUSIVE"
        and bool(reasons & RETRYABLE_REASONS)
        and reasons <= RETRYABLE_REASONS | SCORE_REASONS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--channel", default="clean")
    parser.add_argument("--speakers", type=int, default=105)
    parser.add_argument("--out", type=Path, default=Path("bench/out/api_policy.json"))
    parser.add_argument(
        "--impostors", type=int, default=1, help="Impostor calls per genuine utterance, each claiming another speaker"
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="Run the worker's cohort refresh and self-calibration before the calls (default: none, the calls come "
        "right after enrolment, as a new deployment meets them)",
    )
    parser.add_argument(
        "--retry",
        action="store_true",
        help="Retry each call INCONCLUSIVE for lack of evidence once, joined with the next utterance (?retry_of=)",
    )
    args = parser.parse_args()
    base = get_settings()
    manifest = args.manifest or base.dev_data_dir / "dev" / "manifest.csv"
    by_speaker: dict[str, list[Any]] = {}
    for utt in read_manifest(manifest):
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    speakers = list(by_speaker)[: args.speakers]
    engine = MemoEngine(Engine.from_settings(base))
    with bench_app(base, engine) as client:
        keys = role_headers(client)
        enrolled: dict[str, int] = {}
        for speaker in speakers:
            used = enrol(client, keys["enrolment"], speaker, by_speaker[speaker], args.channel)
            if used is not None:
                enrolled[speaker] = used
        if args.refresh:
            service = client.app.state.service  # type: ignore[attr-defined]
            service.refresh_cohort()
            refit_self_calibration(service.ctx)
        order = [s for s in speakers if s in enrolled]
        partners = {
            s: [order[(k + j) % len(order)] for j in range(1, min(args.impostors, len(order) - 1) + 1)]
            for k, s in enumerate(order)
        }
        rng = random.Random(20261126)
        rng.shuffle(order)
        results: list[dict[str, Any]] = []
        ivr = keys["ivr"]
        spoken: set[str] = set()  # utterances a retry has already used as its extra speech
        for speaker in order:
            later = by_speaker[speaker][enrolled[speaker] :]
            for k, utt in enumerate(later):
                if utt.utt_id in spoken:
                    # Already said in an earlier call's retry: calling with it again would be a replay
                    # of audio the service has heard for this speaker (REPLAY_SUSPECTED, rightly).
                    continue
                body, ctype = through_channel(utt.path, args.channel)
                calls = [(speaker, "genuine")] + [(other, "impostor") for other in partners[speaker]]
                for claimed, kind in calls:
                    headers = {**ivr, "Content-Type": ctype}
                    r = client.post(f"/v1/speakers/{claimed}/verifications", content=body, headers=headers)
                    got = r.json()
                    results.append(
                        {
                            "kind": kind,
                            "speaker": speaker,
                            "claimed": claimed,
                            "utt_id": utt.utt_id,
                            "replay_score": got.get("replay_score"),
                            "cm_score": got.get("cm_score"),
                            "status": r.status_code,
                            "decision": got.get("decision", got.get("code")),
                            "net_speech_s": got.get("net_speech_s"),
                            "llr": got.get("llr"),
                            "calibration": got.get("calibration"),
                            "reasons": got.get("reasons"),
                        }
                    )
                    if args.retry and retryable(got) and k + 1 < len(later):
                        # the call so far: this utterance and the next one joined, through the channel
                        joined, jtype = through_channel(utt.path, args.channel, (later[k + 1].path,))
                        r = client.post(
                            f"/v1/speakers/{claimed}/verifications",
                            params={"retry_of": got["verification_id"]},
                            content=joined,
                            headers={**ivr, "Content-Type": jtype},
                        )
                        again = r.json()
                        spoken.add(later[k + 1].utt_id)
                        results[-1]["retry"] = {
                            "status": r.status_code,
                            "decision": again.get("decision", again.get("code")),
                            "net_speech_s": again.get("net_speech_s"),
                            "llr": again.get("llr"),
                            "accept_threshold": again.get("accept_threshold"),
                            "reasons": again.get("reasons"),
                        }
    report: dict[str, Any] = {
        "manifest": str(manifest),
        "channel": args.channel,
        "enrolled": len(enrolled),
        "refreshed": args.refresh,
        "calibrations": dict(Counter(r["calibration"] for r in results)),
    }
    for kind in ("genuine", "impostor"):
        rows = [r for r in results if r["kind"] == kind]
        counts = Counter(r["decision"] for r in rows)
        report[kind] = {"n": len(rows), **counts, "accept_rate": counts["ACCEPT"] / max(1, len(rows))}
        report[kind]["reasons"] = dict(Counter(r for row in rows for r in row["reasons"] or []))
        if args.retry:
            final = [r.get("retry", r)["decision"] for r in rows]
            report[kind]["after_retry"] = {
                "retried": sum(1 for r in rows if "retry" in r),
                "ACCEPT": final.count("ACCEPT"),
                "accept_rate": final.count("ACCEPT") / max(1, len(rows)),
                "still_inconclusive": final.count("INCONCLUSIVE"),
            }
        bands = band_of([r["net_speech_s"] or 0.0 for r in rows])
        report[kind]["bands"] = {
            label: {
                "n": int((bands == k).sum()),
                "accept": sum(1 for r, b in zip(rows, bands, strict=True) if b == k and r["decision"] == "ACCEPT"),
            }
            for k, label in enumerate(band_labels())
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**report, "calls": results}, indent=1) + "\n")
    print(json.dumps(report, indent=2))
    g, i = report["genuine"], report["impostor"]
    print(
        f"{args.channel}: genuine ACCEPT {g['accept_rate'] * 100:.1f} % of {g['n']}, "
        f"impostor ACCEPT {i['accept_rate'] * 100:.2f} % of {i['n']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
