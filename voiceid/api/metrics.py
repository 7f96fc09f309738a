"""Prometheus metrics. Each app has its own registry, so several apps in one process (tests)
do not collide on metric names."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match

from voiceid.api.auth import require
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.views import Role, ServiceCounters


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "voiceid_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "voiceid_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.decisions = Counter(
            "voiceid_decisions_total", "Verification decisions", ["decision"], registry=self.registry
        )
        self.inference = Histogram(
            "voiceid_inference_seconds",
            "Audio decode + VAD + embedding time, including the wait for a worker",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.inference_admitted = Gauge(
            "voiceid_inference_admitted", "Inferences running or waiting for a worker", registry=self.registry
        )

    def counters(self) -> ServiceCounters:
        return ServiceCounters(
            on_decision=lambda decision: self.decisions.labels(decision).inc(),
            on_inference=self.inference.observe,
        )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(request: Request) -> str:
    # Label by route template, not raw path: speaker ids in labels would explode cardinality.
    route = request.scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path_format", getattr(route, "path", "other")))
    return "unmatched"


def install(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response


async def check_access(request: Request, settings: Settings) -> None:
    """/metrics per VOICEID_METRICS_ACCESS: route names, decision counts and latencies tell an
    outsider how the service is used, so by default only a scraper token or an admin key sees them."""
    if settings.metrics_access == "open":
        return
    if settings.metrics_access == "off":
        raise VoiceIdError(ErrorCode.NOT_FOUND, "metrics are turned off (VOICEID_METRICS_ACCESS=off)")
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    token = settings.metrics_key.get_secret_value() if settings.metrics_key else None
    if scheme.lower() == "bearer" and token and hmac.compare_digest(secret.encode(), token.encode()):
        return
    await require(Role.ADMIN)(request)
