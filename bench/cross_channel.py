"""Voiceprints that follow the caller, and what a second chance does: the shipped policy on the dev set
when enrolment and calls come over different channels, and when an INCONCLUSIVE call is extended.

Rows (each for single-utterance probes and 3-utterance probes, as `voiceid eval --probe-utts`):
- same channel: clean -> clean and G.711 -> G.711 (the README's policy table);
- cross-channel: wideband (clean) enrolment, G.711 calls, scored against the wideband voiceprint
  (`voiceid eval --enrol-channel clean --channel g711-ulaw --no-phone-view`, the service before
  the phone view) and against the voiceprint of the enrolment audio's G.711 view (`--phone-view`,
  the service's default now);
- the reverse: G.711 enrolment, wideband calls (no view can add the missing band).

The service picks cohort and calibration by the probe's channel, and so does every row here: the
cross-channel rows are decided with the shipped phone calibration and policy. The population cohort
holds the other speakers' main voiceprints (enrolled through the enrolment channel), as
`voiceid.services.cohort` does.

Second chance: each probe that has a next utterance of its speaker and ends INCONCLUSIVE is decided
again on the probe joined with that utterance (`voiceid eval --second-chance`); the columns count
only probes that have a next utterance, before and after alike. Two retry policies: the same
thresholds as the first try, and the thresholds the calibration gives for half the target FMR
(`--second-chance-fmr 0.0005`), since an impostor who gets two tries gets two chances to pass.

Usage: python bench/cross_channel.py [--probe-utts 1,3] [--out bench/out/cross_channel.json]
Embeddings and net speech are cached under the data dir.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from bench.dev_set import dev_arguments, parse_dev, save_report
from voiceid.evaluation.operating_point import operating_point, trial_llrs
from voiceid.evaluation.runner import summarise
from voiceid.evaluation.second_chance import second_chance_of
from voiceid.evaluation.verification import TrialArgs, extension_trials
from voiceid.verify.calibration import load_calibrations, select_calibration
from voiceid.verify.policy import BUILTIN_CALIBRATION, policy_from_calibrations

# (label, enrolment channel, probe channel, phone view)
ROWS = (
    ("clean -> clean", "clean", "clean", False),
    ("G.711 -> G.711", "g711-ulaw", "g711-ulaw", False),
    ("clean -> G.711, wideband voiceprint", "clean", "g711-ulaw", False),
    ("clean -> G.711, phone-view voiceprint", "clean", "g711-ulaw", True),
    ("clean -> G.711, phone view, phone-view cohort", "clean", "g711-ulaw", True),
    ("G.711 -> clean", "g711-ulaw", "clean", False),
)


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def main() -> None:
    parser = dev_arguments(__doc__, "bench/out/cross_channel.json", channels=False)
    parser.add_argument("--rows", default=",".join(str(i) for i in range(len(ROWS))), help="indices into ROWS")
    args, settings, dev = parse_dev(parser)
    version = dev.embedding.model_version
    # The fullest regime of the service's normalisation per channel: the dev protocol's cohorts hold the
    # whole population (a dict over all regimes would keep whichever came last in the file).
    ours = [
        c
        for c in load_calibrations(settings.calibration_file or BUILTIN_CALIBRATION)
        if c.model_version == version and c.norm == settings.score_norm
    ]
    shipped = {ch: select_calibration([c for c in ours if c.channel == ch], None) for ch in {c.channel for c in ours}}
    report: dict[str, Any] = {
        "manifest": str(dev.manifest),
        "model_version": version,
        "target_fmr": settings.target_fmr,
        "rows": [],
    }
    trial_args: TrialArgs = (settings.score_norm, settings.score_top_n, settings.cohort_source, settings.cohort_size)
    for index in (int(v) for v in args.rows.split(",")):
        label, enrol_channel, channel, view = ROWS[index]
        for n in (int(v) for v in args.probe_utts.split(",")):
            run = dev.run(channel, n, enrol_channel, view)
            # The population cohort serving phone views to phone calls (not in the service yet).
            run = dataclasses.replace(run, view_cohort="phone-view cohort" in label)
            trials = run.trials(*trial_args)
            cal = shipped[run.service_channel]
            pair = policy_from_calibrations({cal.channel: cal}, settings.target_fmr, settings.target_fnmr)[cal.channel]
            llr = trial_llrs(trials.scores, trials.probe_speech_s, cal)
            policy = operating_point(llr, trials.is_target, trials.probe_speech_s, pair, settings.verify_min_speech_s)
            second, extension_of = extension_trials(dev.base, n, run, dev.embedding, dev.cohort, trial_args)
            chance = second_chance_of(trials, second, extension_of, cal, pair, settings.verify_min_speech_s)
            strict_pair = policy_from_calibrations({cal.channel: cal}, settings.target_fmr / 2, settings.target_fnmr)
            strict = second_chance_of(
                trials, second, extension_of, cal, pair, settings.verify_min_speech_s, strict_pair[cal.channel]
            )
            row = {
                "label": label,
                "enrol_channel": enrol_channel,
                "channel": channel,
                "phone_view_voiceprint": run.claim_vectors is not None,
                "phone_view_cohort": run.view_cohort,
                "service_channel": run.service_channel,
                "calibration": cal.calibration_id,
                "probe_utts": n,
                **summarise(trials.target, trials.nontarget),
                "policy": policy,
                "second_chance": chance,
                "second_chance_half_fmr": strict,
            }
            report["rows"].append(row)
            print(
                f"{label:40s} {n} utt: EER {row['eer'] * 100:.2f} %  genuine ACCEPT "
                f"{_pct(policy['genuine_accept_rate'])} %  impostor ACCEPT {_pct(policy['impostor_accept_rate'], 3)} %"
                f"  | second chance: genuine {_pct(chance['genuine_accept_rate_before'])} -> "
                f"{_pct(chance['genuine_accept_rate_after'])} %  impostor "
                f"{_pct(chance['impostor_accept_rate_before'], 3)} -> "
                f"{_pct(chance['impostor_accept_rate_after'], 3)} %  (retry at half the FMR: genuine "
                f"{_pct(strict['genuine_accept_rate_after'])} %  impostor "
                f"{_pct(strict['impostor_accept_rate_after'], 3)} %)",
                file=sys.stderr,
            )
    save_report(args.out, report)
    print("| enrolment -> call | probe | EER | calibration | genuine ACCEPT / INCONCL. / REJECT | impostor ACCEPT |")
    print("|---|---|---:|---|---:|---:|")
    for r in report["rows"]:
        p = r["policy"]
        print(
            f"| {r['label']} | {r['probe_utts']} utt | {r['eer'] * 100:.2f} % | {r['service_channel']} | "
            f"{_pct(p['genuine_accept_rate'])} / {_pct(p['genuine_inconclusive_rate'])} / "
            f"{_pct(p['genuine_reject_rate'])} % | {p['impostor']['accept']} of {p['impostor']['n']} "
            f"({_pct(p['impostor_accept_rate'], 3)} %) |"
        )
    print()
    print(
        "| enrolment -> call | probe | genuine ACCEPT: 1st try → 2nd chance (same / half-FMR retry) "
        "| genuine still INCONCL. | impostor ACCEPT: 1st try → 2nd chance (same / half-FMR retry) |"
    )
    print("|---|---|---:|---:|---:|")
    for r in report["rows"]:
        c, h = r["second_chance"], r["second_chance_half_fmr"]
        n_imp = c["impostor"]["before"]["n"]
        print(
            f"| {r['label']} | {r['probe_utts']} utt | {_pct(c['genuine_accept_rate_before'])} → "
            f"{_pct(c['genuine_accept_rate_after'])} / {_pct(h['genuine_accept_rate_after'])} % "
            f"(n = {c['genuine']['before']['n']}) | {_pct(c['genuine_inconclusive_rate_after'])} / "
            f"{_pct(h['genuine_inconclusive_rate_after'])} % | {c['impostor']['before']['accept']} → "
            f"{c['impostor']['after']['accept']} / {h['impostor']['after']['accept']} of {n_imp} "
            f"({_pct(c['impostor_accept_rate_before'], 3)} → {_pct(c['impostor_accept_rate_after'], 3)} / "
            f"{_pct(h['impostor_accept_rate_after'], 3)} %) |"
        )


if __name__ == "__main__":
    main()
