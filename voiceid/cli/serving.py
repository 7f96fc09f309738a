"""Running the service and its upkeep: `voiceid serve`, `worker`, `db upgrade`, `index`, `purge`,
`cohort`."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from voiceid.cli.context import database
from voiceid.cli.failures import fail
from voiceid.config import get_settings
from voiceid.errors import VoiceIdError
from voiceid.services.api_keys import check_admin_key_strength
from voiceid.services.cohort import refresh_all_cohorts
from voiceid.services.context import AppContext
from voiceid.services.retention import expire_unused_voiceprints, purge_attempts
from voiceid.services.upgrade import replica_decision_versions, upgrade
from voiceid.storage.index_repo import list_snapshots
from voiceid.worker.index_snapshots import JOB_NAME as INDEX_SNAPSHOT_JOB

db_app = typer.Typer(help="Database: schema upgrade and bootstrap (run before the replicas).", no_args_is_help=True)
index_app = typer.Typer(help="Persisted 1:N index snapshots (written by the worker).", no_args_is_help=True)
cohort_app = typer.Typer(help="Impostor cohorts for score normalisation.", no_args_is_help=True)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class StartupGuard:
    """The ASGI app `voiceid serve` hands uvicorn: the service app, with a failed start-up kept for the
    CLI to print as one line. Starlette reports a lifespan failure to uvicorn with the traceback as the
    message, which uvicorn logs, then logs "Application startup failed" and exits with status 3. The
    guard blanks that message and keeps the exception; `serve` raises it once uvicorn has stopped."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except BaseException as exc:
            self.error = self.error or exc
            raise


class _StartupFailedLine(logging.Filter):
    """Drops uvicorn's own "Application startup failed. Exiting." once the guard holds the error: the
    CLI's line says what failed and what to do."""

    def __init__(self, guard: StartupGuard) -> None:
        super().__init__()
        self.guard = guard

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.guard.error is not None and record.getMessage().startswith("Application startup failed"))


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: VOICEID_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: VOICEID_PORT, 8000)")] = None,
) -> None:
    """Run the HTTP API (the model loads at start-up; `db upgrade` runs first unless
    VOICEID_UPGRADE_ON_START=false; on SQLite the singleton jobs run in this process too).

    Connections are bounded by settings: VOICEID_MAX_CONNECTIONS open connections per process
    (HTTP and WebSocket; above it, 503), VOICEID_HTTP_HEADER_TIMEOUT_S to send request headers,
    VOICEID_HTTP_KEEP_ALIVE_S idle keep-alive, VOICEID_MAX_STREAMS concurrent telephony streams."""
    from voiceid.api.app import create_app
    from voiceid.api.server import serve as run_server

    settings = get_settings()
    if settings.admin_key is not None:  # refuse before binding the port, with the message alone (no traceback)
        try:
            check_admin_key_strength(settings.admin_key.get_secret_value(), settings.admin_key_min_bits)
        except VoiceIdError as exc:
            fail(exc)
    guard = StartupGuard(create_app(settings))
    quiet = _StartupFailedLine(guard)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        run_server(guard, settings, host, port)
    except SystemExit:
        if guard.error is None:  # uvicorn's own refusal (the port taken): it has logged its line
            raise
    finally:
        uvicorn_log.removeFilter(quiet)
    if guard.error is not None:
        raise guard.error  # printed as one line by the CLI (voiceid.cli.failures)


@db_app.command("upgrade")
def db_upgrade(
    repin: Annotated[
        bool, typer.Option(help="Pin this release's cohort and calibration even where others are pinned")
    ] = False,
) -> None:
    """Migrations, admin-key bootstrap and decision-data pins, under a database lock (idempotent)."""
    settings = get_settings()

    def pins(session: Session) -> dict[str, str]:
        # The decision data of the backend the replicas will run with these settings (`auto` is
        # resolved as a replica resolves it, from what is enrolled), not always the fp32 model's.
        return replica_decision_versions(settings, session)

    try:
        context = AppContext.from_settings(settings)
        report = upgrade(context.db, settings, pins, repin=repin)
    except VoiceIdError as exc:
        fail(exc)
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


def worker(
    once: Annotated[bool, typer.Option(help="Run every job once and exit (cron-style)")] = False,
) -> None:
    """Run the singleton jobs (retention purge, webhook outbox, change-feed pruning). Safe to run as
    one or several: each job tick runs under a database lock in one worker at a time."""
    from voiceid.worker.jobs import JOBS
    from voiceid.worker.runner import Worker

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        fail(exc)
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
    from voiceid.worker.jobs import JOBS
    from voiceid.worker.runner import Worker

    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        fail(exc)
    try:
        (job,) = [job for job in JOBS if job.name == INDEX_SNAPSHOT_JOB]
        result = Worker(context, [job]).tick(job)
    finally:
        context.close()
    typer.echo(json.dumps({"job": result.job, "status": result.status.value, "handled": result.handled}))


@index_app.command("status")
def index_status() -> None:
    """The snapshots in the database: kind, model version, revision, vectors, size, state."""
    try:
        context = AppContext.from_settings(get_settings())
    except VoiceIdError as exc:
        fail(exc)
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


def purge() -> None:
    """Delete attempt embeddings past VOICEID_ATTEMPT_RETENTION_DAYS and erase voiceprints unused for
    VOICEID_VOICEPRINT_RETENTION_DAYS (the server also does both periodically)."""
    with database() as context:  # the worker's two retention jobs, run here once
        removed = purge_attempts(context)
        expired = expire_unused_voiceprints(context.db, context.clock(), context.settings.voiceprint_retention_days)
    typer.echo(json.dumps({"purged_attempt_embeddings": removed, "expired_voiceprints": expired}))


@cohort_app.command("build")
def cohort_build(
    channel: Annotated[str, typer.Option(help="clean (-> wideband cohort) | g711-ulaw (-> phone cohort)")] = "clean",
    manifest: Annotated[Path | None, typer.Option(help="Cohort manifest (default: dev_cohort)")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where to write (default: VOICEID_COHORT_DIR)")] = None,
) -> None:
    """Embed a cohort through a channel and store it for the service and `voiceid eval`."""
    import numpy as np

    from voiceid.audio.frontend import FrontEndConfig
    from voiceid.engine import Engine
    from voiceid.evaluation.channel import CHANNELS, through_channel
    from voiceid.evaluation.protocol import read_manifest
    from voiceid.evaluation.verification import default_cohort_manifest
    from voiceid.verify.cohort import Cohort, save_cohort, service_channel

    if channel not in CHANNELS:
        raise typer.BadParameter(f"channel must be one of {', '.join(CHANNELS)}")
    settings = get_settings()
    source = manifest or default_cohort_manifest(settings)
    utterances = read_manifest(source)
    engine = Engine.embedding_only(settings)
    vectors = []
    rate = 16000
    for utt in utterances:
        data, content_type = through_channel(utt.path, channel)
        try:
            utterance = engine.analyse(data, content_type)
        except VoiceIdError as exc:
            typer.echo(f"skipped {utt.utt_id}: {exc.code}", err=True)
            continue
        vectors.append(utterance.vector)
        rate = utterance.quality.sample_rate
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
    with database() as context, context.db.transaction() as session:
        changed = refresh_all_cohorts(session, context.settings.cohort_size, context.clock()) > 0
    typer.echo("new cohort snapshot written" if changed else "cohort unchanged")
