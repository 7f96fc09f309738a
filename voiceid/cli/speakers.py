"""`voiceid speakers`: enrol and verify from audio files, on the same service as the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voiceid.cli.context import content_type, service
from voiceid.cli.failures import fail
from voiceid.errors import VoiceIdError
from voiceid.statuses import SpeakerStatus

speakers_app = typer.Typer(help="Enrol and verify speakers locally (same service as the API).", no_args_is_help=True)


@speakers_app.command("enrol")
def speakers_enrol(
    speaker_id: Annotated[str, typer.Argument(help="Your reference for the speaker")],
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Enrolment audio files")],
    consent_version: Annotated[str, typer.Option(help="Version of the consent text the speaker agreed to")],
    channel: Annotated[str, typer.Option(help="Where consent was given")] = "phone",
) -> None:
    """Record consent and enrol from files, stopping once ENROLLED."""
    with service() as running:
        try:
            running.speakers.put(speaker_id, True, consent_version, channel)
            for path in files:
                step = running.enrolment.add_audio(speaker_id, path.read_bytes(), content_type(path))
                typer.echo(
                    f"{path.name}: {step.status} {step.net_speech_s:.1f}/{step.required_speech_s:.0f} s net speech"
                )
                if step.status is SpeakerStatus.ENROLLED:
                    break
            else:
                typer.secho("not enough speech yet: send more files", err=True, fg=typer.colors.YELLOW)
                raise typer.Exit(1)
        except VoiceIdError as exc:
            fail(exc)


@speakers_app.command("verify")
def speakers_verify(
    speaker_id: Annotated[str, typer.Argument()],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Verify one file against an enrolled speaker; prints the decision as JSON."""
    # The HTTP API's schemas load the engine's types (torch): imported with the service.
    from voiceid.api.schemas import VerificationRecord

    with service() as running:
        try:
            view = running.verifications.verify(speaker_id, file.read_bytes(), content_type(file))
        except VoiceIdError as exc:
            fail(exc)
    # The same fields, names and rounding as the HTTP API's GET /v1/verifications/{id}.
    typer.echo(VerificationRecord.model_validate(view).model_dump_json())
