"""The decision policy by deployment size: what a service with N enrolled callers decides.

For each channel, probe length and population size N, the dev trials are scored as the service scores
them with N callers enrolled (each claimed speaker's cohort holds at most N - 1 enrolled voiceprints,
topped up from the shipped LibriSpeech cohort; voiceid/evaluation/regimes.py) and decided:

- `regimes` (today): the calibration of the regime N falls in (raw cosine for the first callers, the
  cosine centred on the enrolled callers' mean from the first centring regime, population AS-norm
  from 100 on), with that regime's thresholds; a centring regime is scored over several draws of
  which N callers are enrolled (voiceid/evaluation/runner.regime_draws);
- `as-norm regimes` (the default until 2026-12-06): the raw cosine below 100 callers, population AS-norm
  from 100;
- `one calibration` (before issue 19): population AS-norm at every size with the one calibration fitted
  on the whole dev population: what a new deployment met until its cohort held ~100 callers.

N = 1 is a deployment whose first caller calls back (no other voiceprint in the cohort). `all` is the
whole manifest (the dev protocol of the README's tables). Dev speakers are the calibration's own: the
figures are optimistic in level, but the regime effect is what they show.

Usage: python bench/regimes.py [--channels clean,g711-ulaw] [--populations 1,10,30,100,all]
Embeddings are cached under the data dir.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.dev_set import dev_arguments, parse_dev, save_report
from voiceid.evaluation.operating_point import format_accepts, operating_point, trial_llrs
from voiceid.evaluation.regimes import Regime, regime_for, regime_trials
from voiceid.verify.calibration import load_calibrations, select_calibration
from voiceid.verify.policy import BUILTIN_CALIBRATION, channel_regimes


def main() -> None:
    parser = dev_arguments(__doc__, "bench/out/regimes.json")
    parser.add_argument("--populations", default="1,10,30,100,all")
    args, settings, dev = parse_dev(parser)
    version = dev.embedding.model_version
    calibrations = [c for c in load_calibrations(settings.calibration_file or BUILTIN_CALIBRATION)]
    rows: list[dict[str, Any]] = []
    for channel in args.channels.split(","):
        for n in (int(v) for v in args.probe_utts.split(",")):
            run = dev.run(channel, n)
            ours = [c for c in calibrations if c.channel == run.service_channel and c.model_version == version]
            regimes = channel_regimes(ours, settings.score_norm)
            # The two earlier policies, for comparison: population AS-norm's regimes (raw cosine below
            # 100 callers, AS-norm from 100: the default until 2026-12-06), and before issue 19 that
            # AS-norm calibration at every size.
            asnorm = channel_regimes([c for c in ours if c.norm != "centre"], "as-norm")
            fullest = select_calibration(asnorm, None)
            for label in args.populations.split(","):
                population = None if label == "all" else int(label)
                today = regime_for(regimes, settings, population)
                previous = regime_for(asnorm, settings, population)
                before = Regime(fullest, regime_for(asnorm, settings, None).thresholds, population)
                row: dict[str, Any] = {"channel": channel, "probe_utts": n, "population": label}
                for name, regime in (("regimes", today), ("as_norm_regimes", previous), ("one_calibration", before)):
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
                        for name in ("regimes", "as_norm_regimes", "one_calibration")
                    ),
                    file=sys.stderr,
                )
    save_report(args.out, {"rows": rows, "target_fmr": settings.target_fmr})
    print(
        "| channel | probe | callers | regime | genuine ACCEPT | impostor ACCEPT "
        "| until 2026-12-06 (raw < 100, AS-norm): genuine / impostor "
        "| before issue 19 (one AS-norm calibration): genuine / impostor |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        t, p, b = r["regimes"], r["as_norm_regimes"], r["one_calibration"]
        print(
            f"| {r['channel']} | {r['probe_utts']} utt | {r['population']} | {t['calibration'].split('/')[1]} | "
            f"{format_accepts(t, ' | ')} | {p['genuine_accept_rate'] * 100:.1f} % / "
            f"{p['impostor_accept_rate'] * 100:.3f} % | {b['genuine_accept_rate'] * 100:.1f} % / "
            f"{b['impostor_accept_rate'] * 100:.3f} % |"
        )


if __name__ == "__main__":
    main()
