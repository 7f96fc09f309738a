"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from voiceid.api import errors, first_start, guard, home, openapi, review, security_headers
from voiceid.api import metrics as metrics_module
from voiceid.api.replica import Replica
from voiceid.api.routes import audit as audit_routes
from voiceid.api.routes import calls, keys, speakers, verifications, watchlist
from voiceid.api.schemas import ErrorBody
from voiceid.api.server import CONNECTIONS_STATE
from voiceid.config import Settings, get_settings
from voiceid.engine import Engine
from voiceid.security.throttle import FailureThrottle
from voiceid.services.root import VoiceIdService
from voiceid.telephony_adapter import twilio
from voiceid.telephony_adapter.limits import PreAuthGate, StreamSlots


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The service app. Start-up runs the migrations, bootstraps the admin key and loads the model
    (unless an already loaded `engine` is passed, as the tests do to share one)."""
    settings = settings or get_settings()
    metrics = metrics_module.Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await run_in_threadpool(VoiceIdService.from_settings, settings, engine)
        service.counters = metrics.counters()
        metrics.inference_admitted.set_function(lambda: service.pool.admitted)
        replica = await run_in_threadpool(Replica.start, service)  # decision-data pins; jobs on SQLite
        app.state.service = service
        app.state.replica = replica
        app.state.auth_throttle = FailureThrottle(
            settings.auth_fail_limit, settings.auth_fail_window_s, settings.auth_throttle_clients
        )
        await run_in_threadpool(first_start.announce, service)
        try:
            yield
        finally:
            await run_in_threadpool(replica.stop)
            await run_in_threadpool(service.close)

    app = FastAPI(
        title="voiceid",
        version="1",
        description="Voice ID for telephone IVRs: consented enrolment, verification decisions, score log.",
        lifespan=lifespan,
        docs_url=None,  # served by api/openapi.py from a package, not a CDN
        redoc_url=None,
        responses={
            401: {"model": ErrorBody},
            403: {"model": ErrorBody},
        },
    )
    app.state.stream_slots = StreamSlots(settings.max_streams)
    app.state.preauth_gate = PreAuthGate.from_settings(settings)
    errors.install(app, settings.retry_after_s)
    guard.install(app, settings)  # bodies: authenticated and bounded before FastAPI reads them
    security_headers.install(app)
    metrics_module.install(app, metrics)
    app.include_router(keys.router)
    app.include_router(audit_routes.router)
    app.include_router(speakers.router)
    app.include_router(verifications.router)
    app.include_router(twilio.router)
    app.include_router(calls.router)
    app.include_router(watchlist.router)
    app.include_router(review.router)
    app.include_router(home.router)
    openapi.install(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready for traffic: the model is loaded, the database answers and no limit is reached
        (`saturated` lists those that are: stream slots, connections waiting to authenticate,
        buffered upload bytes, open connections). Also reports the database
        revision this replica's voiceprint and watchlist caches hold and the content hashes of the
        cohort and calibration it decides with (equal hashes: equal decisions)."""
        service: VoiceIdService | None = getattr(app.state, "service", None)
        model = service is not None and service.engine.model_version is not None
        database = service is not None and await run_in_threadpool(service.db.ping)
        # Saturated: a new call or upload would be refused right now. Ready means "send me traffic",
        # so a replica at its limits says so (a load balancer then prefers another) rather than
        # answering ready while refusing every request.
        saturated = saturation(app, request)
        ok = model and database and not saturated
        status = "ready" if ok else ("saturated" if model and database else "not ready")
        body: dict[str, object] = {"status": status, "model": model, "database": database, "saturated": saturated}
        replica: Replica | None = getattr(app.state, "replica", None)
        if replica is not None:
            body.update(replica.report())
        return JSONResponse(body, status_code=200 if ok else 503)

    # Declared as secured (a scraper token or an admin key, unless VOICEID_METRICS_ACCESS=open), so
    # "Try it out" sends the key and the 401/403/404 answers are documented.
    @app.get("/metrics", tags=["operations"], response_class=Response, openapi_extra={"security": [{"bearerAuth": []}]})
    async def prometheus(request: Request) -> Response:
        """Prometheus metrics; who may read them is set by VOICEID_METRICS_ACCESS (off | open | key)."""
        await metrics_module.check_access(request, settings)
        return metrics.render()

    return app


def saturation(app: FastAPI, request: Request) -> list[str]:
    """The limits this process is at now (empty: it takes new work)."""
    state = app.state
    full = []
    if state.stream_slots.full:
        full.append("streams")
    if state.preauth_gate.full:
        full.append("preauth_connections")
    if state.upload_budget.full:
        full.append("upload_bytes")
    # Set by `voiceid serve`'s protocol (api/server.py) on probe requests: (open connections, cap).
    connections = request.scope.get("state", {}).get(CONNECTIONS_STATE)
    if connections is not None and connections[1] is not None and connections[0] >= connections[1]:
        full.append("connections")
    return full
