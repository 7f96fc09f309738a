"""`voiceid telephony` (the AudioSocket and SIP servers) and `voiceid ivr simulate` (a phone call
played from audio files against a running service)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from voiceid.cli.context import service
from voiceid.cli.serving import LOG_FORMAT
from voiceid.config import get_settings

telephony_app = typer.Typer(
    help="Phone-line protocols: Asterisk AudioSocket server, SIP/SIPREC server.", no_args_is_help=True
)
ivr_app = typer.Typer(help="IVR simulator: play audio files as a phone call.", no_args_is_help=True)


def simulation_error(exc: BaseException, url: str) -> str:
    """One line saying why a simulated call failed: the service's error code and message when it
    answered with one, else what could not be reached."""
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


@telephony_app.command("audiosocket")
def telephony_audiosocket(
    host: Annotated[str | None, typer.Option(help="Interface (default: VOICEID_AUDIOSOCKET_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: VOICEID_AUDIOSOCKET_PORT)")] = None,
) -> None:
    """Run the Asterisk AudioSocket server. Calls are bound with PUT /v1/calls/{uuid} on the API,
    which shares this server's database."""
    from voiceid.telephony_adapter.audiosocket import serve

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = get_settings()
    with service() as running, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(running, host or settings.audiosocket_host, settings.audiosocket_port if port is None else port)
        )


@telephony_app.command("sip")
def telephony_sip(
    host: Annotated[str | None, typer.Option(help="Interface (default: VOICEID_SIP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="UDP and TCP port (default: VOICEID_SIP_PORT)")] = None,
) -> None:
    """Run the SIP user agent / SIPREC recording server (UDP and TCP). Calls are bound with
    PUT /v1/calls/{uuid} on the API, which shares this server's database; the INVITE names the
    call with an X-Voiceid-Call header (or its Call-ID, or the SIPREC metadata's call id)."""
    from voiceid.telephony_adapter.sip import serve

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = get_settings()
    with service() as running, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(running, host or settings.sip_host, settings.sip_port if port is None else port))


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
    run: Coroutine[Any, Any, simulator.SimulationResult]
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
