"""`voiceid eval`, `calibrate`, `eval-pad`, `calibrate-pad` and `eval-challenge`: options in, the
evaluation functions of `voiceid.evaluation` (which the bench scripts call too), figures out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voiceid.cli.failures import fail
from voiceid.config import get_settings
from voiceid.errors import VoiceIdError
from voiceid.verify.calibration import DEFAULT_REGIMES

if TYPE_CHECKING:
    from voiceid.evaluation.protocol import Utterance
    from voiceid.evaluation.runner import Progress

CHANNEL_HELP = "clean | g711-ulaw | g711-alaw"
REGIMES_DEFAULT = ",".join(DEFAULT_REGIMES)


def _write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


def _progress_bar(channel: str) -> Progress:
    from tqdm import tqdm

    def progress(items: Iterable[Utterance]) -> Iterable[Utterance]:
        bar: Iterable[Utterance] = tqdm(
            items, desc=f"embedding ({channel})", unit="utt", disable=not sys.stderr.isatty()
        )
        return bar

    return progress


def eval_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.csv (utt_id,speaker_id,path)")],
    channel: Annotated[str, typer.Option(help=CHANNEL_HELP)] = "clean",
    enrol_channel: Annotated[
        str | None,
        typer.Option(help="Channel of the enrolment audio, e.g. clean with a G.711 --channel (default: --channel)"),
    ] = None,
    phone_view: Annotated[
        bool | None,
        typer.Option(
            help="Wideband enrolment, phone probes: score against the voiceprint of the enrolment audio's G.711 "
            "view, as the service does (default: VOICEID_ENROL_PHONE_VIEW)"
        ),
    ] = None,
    second_chance: Annotated[
        bool,
        typer.Option(
            help="Policy section: give INCONCLUSIVE probes a second chance with the call's next utterance "
            "and report the decisions after it"
        ),
    ] = False,
    second_chance_fmr: Annotated[
        float | None,
        typer.Option(
            help="Decide the second chance by the thresholds for this false-match rate (default: the same "
            "thresholds as the first try, VOICEID_TARGET_FMR); the API decides a retry (?retry_of=) at "
            "VOICEID_TARGET_FMR x VOICEID_RETRY_FMR_FACTOR, 0.0005 by default"
        ),
    ] = None,
    enrol_utts: Annotated[int, typer.Option(help="Utterances per voiceprint (first K of each speaker)")] = 3,
    probe_utts: Annotated[
        int, typer.Option(help="Join N test utterances of a speaker into one probe, as a longer call would be")
    ] = 1,
    embedder: Annotated[str, typer.Option(help="voiceid | speechbrain-bare (baseline)")] = "voiceid",
    norm: Annotated[
        str | None, typer.Option(help="Normalisation: none | s-norm | as-norm | centre (default: setting)")
    ] = None,
    top_n: Annotated[int | None, typer.Option(help="AS-norm: cohort scores kept per side (default: setting)")] = None,
    cohort: Annotated[
        str | None, typer.Option(help="population (the other enrolled speakers) | builtin (default: setting)")
    ] = None,
    cohort_size: Annotated[int | None, typer.Option(help="Fixed cohort size C (default: setting)")] = None,
    cohort_manifest: Annotated[
        Path | None, typer.Option(help="Impostor cohort (default: <dev data>/dev_cohort/manifest.csv)")
    ] = None,
    calibration: Annotated[
        str,
        typer.Option(
            help="Policy section: shipped (the service's calibration file) | self (also the self-calibration the "
            "worker fits on the population's own non-target trials, 2 folds by speaker) | a calibration.json path"
        ),
    ] = "shipped",
    population: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Decide as a deployment with this many enrolled callers would (its normalisation regime); "
            "default: the whole manifest",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON")] = None,
    plots: Annotated[Path | None, typer.Option(help="Directory for DET and histogram PNGs")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse embeddings cached under the data dir")] = True,
) -> None:
    """Speaker-verification accuracy on a manifest: EER, minDCF, FNMR at fixed FMR, Cllr, DET curve,
    and what the shipped decision policy does (ACCEPT / INCONCLUSIVE / REJECT per net-speech band)."""
    from voiceid.evaluation.operating_point import format_table
    from voiceid.evaluation.second_chance import format_second_chance
    from voiceid.evaluation.verification import (
        EvalOptions,
        EvaluationInputError,
        RunSpec,
        evaluate_verification,
        summary_line,
    )

    settings = get_settings()
    spec = RunSpec(
        manifest,
        channel,
        enrol_utts,
        cohort_manifest,
        probe_utts,
        enrol_channel,
        settings.enrol_phone_view if phone_view is None else phone_view,
    )
    options = EvalOptions(
        spec,
        embedder,
        norm,
        top_n,
        cohort,
        cohort_size,
        calibration,
        population,
        second_chance,
        second_chance_fmr,
        plots,
        cache,
    )
    try:
        report = evaluate_verification(settings, options, _progress_bar)
    except EvaluationInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except VoiceIdError as exc:
        fail(exc)
    _write_json(out, report)
    if "warning" in report:
        typer.echo(f"warning: {report['warning']}", err=True)
    typer.echo(summary_line(report))
    if "policy" in report:
        typer.echo(format_table(report["policy"]))
    for name, point in report.get("policy_by_calibration", {}).get("by_calibration", {}).items():
        typer.echo(
            f"{name:>8} calibration, within-fold trials: genuine ACCEPT {point['genuine_accept_rate'] * 100:.1f} %  "
            f"impostor ACCEPT {point['impostor']['accept']} of {point['impostor']['n']} "
            f"({point['impostor_accept_rate'] * 100:.3f} %)"
        )
    if "second_chance" in report:
        typer.echo(format_second_chance(report["second_chance"]))


def calibrate_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Calibration trials (manifest.csv)")],
    channel: Annotated[str, typer.Option(help=CHANNEL_HELP)] = "clean",
    out: Annotated[Path, typer.Option(help="calibration.json (the entry for this channel is replaced)")] = Path(
        "calibration.json"
    ),
    norm: Annotated[
        str | None, typer.Option(help="none | s-norm | as-norm | centre (default: the service's VOICEID_SCORE_NORM)")
    ] = None,
    top_n: Annotated[int | None, typer.Option(help="AS-norm top-N (default: setting)")] = None,
    cohort: Annotated[str | None, typer.Option(help="population | builtin (default: setting)")] = None,
    cohort_size: Annotated[int | None, typer.Option(help="Fixed cohort size C (default: setting)")] = None,
    enrol_utts: Annotated[int, typer.Option()] = 3,
    probe_utts: Annotated[
        str, typer.Option(help="Comma-separated probe lengths in utterances pooled into the fit, e.g. 1,2,3")
    ] = "1,2,3",
    cohort_manifest: Annotated[Path | None, typer.Option()] = None,
    regimes: Annotated[
        str,
        typer.Option(
            help="Regimes to fit (population cohort only): 'none' is the raw cosine a deployment scores with "
            "until its population is large enough; a number N fits the normalised scores of a cohort of N "
            "enrolled voiceprints, the regime from N enrolled callers on; 'centre:N' fits the cosine centred "
            "on the mean of N enrolled voiceprints"
        ),
    ] = REGIMES_DEFAULT,
) -> None:
    """Fit the quality-aware score -> LLR calibration of one channel from a trial manifest, pooling
    probes of several lengths so every net-speech band is represented; prints Cllr and minCllr per band."""
    from voiceid.evaluation.calibration_fit import CalibrateOptions, calibrate_channel
    from voiceid.evaluation.verification import EvaluationInputError

    settings = get_settings()
    options = CalibrateOptions(
        manifest,
        channel,
        out,
        norm,
        top_n,
        cohort,
        cohort_size,
        enrol_utts,
        [int(v) for v in probe_utts.split(",") if v.strip()],
        cohort_manifest,
        [v.strip() for v in regimes.split(",") if v.strip()],
    )
    try:
        fits = calibrate_channel(settings, options)
    except EvaluationInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except VoiceIdError as exc:
        fail(exc)
    for fit in fits:
        fitted = fit.calibration
        if fitted is None:
            typer.echo(f"regime {fit.population_min}: {fit.skipped}")
            continue
        accept, reject = fitted.thresholds(settings.target_fmr, settings.target_fnmr)
        typer.echo(
            f"{fitted.calibration_id}: weights {json.dumps({k: round(v, 4) for k, v in fitted.weights.items()})} "
            f"bias {fitted.bias:.4f}; Cllr {fitted.cllr:.4f} minCllr {fitted.min_cllr:.4f} "
            f"({fitted.n_target} target / {fitted.n_nontarget} non-target trials)"
        )
        for band in fitted.bands:
            typer.echo(
                f"  {band.label:>7}: {band.n_target:>5} target {band.n_nontarget:>7} non-target  "
                f"Cllr {band.cllr}  minCllr {band.min_cllr}"
            )
        typer.echo(
            f"policy at FMR {settings.target_fmr} / FNMR {settings.target_fnmr}: accept LLR >= {accept:.2f}, "
            f"reject LLR < {reject:.2f}"
        )


def eval_pad_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="dev_spoof-style manifest.csv")],
    channel: Annotated[str, typer.Option(help=CHANNEL_HELP)] = "clean",
    detector: Annotated[str, typer.Option(help="shipped (CM + back-end, as the service) | aasist (raw)")] = "shipped",
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON")] = None,
    plot: Annotated[Path | None, typer.Option(help="DET plot PNG (APCER vs BPCER)")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse CM outputs cached under the data dir")] = True,
) -> None:
    """Presentation-attack detection accuracy: EER, APCER at BPCER 1 % / 5 %, per attack and per source."""
    from voiceid.evaluation.pad import evaluate_pad, pad_summary_line

    try:
        evaluation = evaluate_pad(get_settings(), manifest, channel, detector, cache, plot)
    except VoiceIdError as exc:
        fail(exc)
    except ValueError as exc:  # a channel, detector or manifest it cannot run with
        raise typer.BadParameter(str(exc)) from None
    _write_json(out, evaluation.report)
    typer.echo(pad_summary_line(evaluation.report, evaluation.run))


def eval_challenge_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.csv with a `text` column")],
    channel: Annotated[str, typer.Option(help=CHANNEL_HELP)] = "clean",
    out: Annotated[Path | None, typer.Option(help="Write the report (and every trial) as JSON")] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Recogniser threshold (default: VOICEID_CHALLENGE_THRESHOLD)")
    ] = None,
    fit_speakers: Annotated[
        bool,
        typer.Option(help="Fit the threshold on the first half of the speakers, report on the others"),
    ] = False,
    target_false_pass: Annotated[float, typer.Option(help="With --fit-speakers: mismatch pass rate aimed at")] = 0.01,
    mismatch_per_row: Annotated[int, typer.Option(min=1, help="Mismatch trials per row (other rows' texts)")] = 10,
    engine: Annotated[str, typer.Option(help="whisper-base (the service's) | pocketsphinx")] = "whisper-base",
) -> None:
    """Spoken-challenge recogniser: genuine and mismatch pass rates per kind, and its real-time factor."""
    from voiceid.audio.frontend import FrontEndConfig
    from voiceid.challenge.recogniser import DigitRecogniser, RecogniserEngine
    from voiceid.evaluation.challenge import evaluate, read_text_rows, split_speakers
    from voiceid.evaluation.channel import CHANNELS

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    if engine not in {e.value for e in RecogniserEngine}:
        raise typer.BadParameter(f"engine must be one of {', '.join(e.value for e in RecogniserEngine)}")
    settings = get_settings()
    try:
        rows = read_text_rows(manifest)
        fit = split_speakers(rows)[0] if fit_speakers else None
        report = evaluate(
            rows,
            DigitRecogniser(engine=RecogniserEngine(engine)),
            channel,
            settings.challenge_threshold if threshold is None else threshold,
            mismatch_per_row,
            FrontEndConfig.from_settings(settings).limits,
            fit_speakers=fit,
            target_false_pass=target_false_pass,
        )
    except VoiceIdError as exc:
        fail(exc)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = {"manifest": str(manifest), **report}
    _write_json(out, report)
    for kind, figures in report["kinds"].items():
        typer.echo(
            f"{kind} {channel}: genuine pass {figures['genuine_pass_rate']}  mismatch pass "
            f"{figures['mismatch_pass_rate']}  ({figures['n_genuine']} genuine, {figures['n_mismatch']} mismatch, "
            f"threshold {report['threshold']:.4f}, real-time factor {figures['real_time_factor']})"
        )


def calibrate_pad_command(
    manifest: Annotated[
        list[Path],
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Repeatable. dev_spoof-style manifest, or a speaker-verification manifest (all bona fide)",
        ),
    ],
    channel: Annotated[
        list[str],
        typer.Option(help="Repeatable. clean (-> wideband, or phone for 8 kHz files) | g711-ulaw | g711-alaw"),
    ] = ["clean", "g711-ulaw"],  # noqa: B006 (typer reads the default; it is never mutated)
    target_bpcer: Annotated[
        float | None, typer.Option(help="Share of genuine callers flagged (default: VOICEID_CM_TARGET_BPCER)")
    ] = None,
    holdout_share: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of each source's speakers kept out of the fit")
    ] = 0.3,
    out: Annotated[Path, typer.Option(help="pad_thresholds.json to write")] = Path("pad_thresholds.json"),
    report: Annotated[Path | None, typer.Option(help="Write the BPCER per source (fit and held out) as JSON")] = None,
) -> None:
    """Fit the countermeasure thresholds per channel for a target BPCER on genuine callers' speech from
    several manifests; report the BPCER per data source on fitted and held-out speakers."""
    from voiceid.antispoof.policy import save_thresholds
    from voiceid.evaluation.pad import fit_pad_thresholds

    settings = get_settings()
    bpcer = target_bpcer if target_bpcer is not None else settings.cm_target_bpcer
    try:
        fitted = fit_pad_thresholds(settings, manifest, channel, bpcer, holdout_share)
    except VoiceIdError as exc:
        fail(exc)
    except ValueError as exc:  # a channel it does not know, or nothing bona fide to fit on
        raise typer.BadParameter(str(exc)) from None
    save_thresholds(fitted.thresholds, out)
    _write_json(report, fitted.report)
    typer.echo(json.dumps(fitted.thresholds.to_dict(), indent=2))
    for key, row in fitted.per_source.items():
        held = "-" if row["bpcer_held_out"] is None else f"{row['bpcer_held_out'] * 100:.1f} %"
        fit = "-" if row["bpcer_fit"] is None else f"{row['bpcer_fit'] * 100:.1f} %"
        typer.echo(
            f"  {key:55s} {row['channel']:8s} BPCER fit {fit:>7} (n={row['n_fit']})  "
            f"held out {held:>7} (n={row['n_held_out']})"
        )
