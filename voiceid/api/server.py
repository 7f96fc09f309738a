"""How `voiceid serve` runs uvicorn: bounded connections and bounded waits for request headers.

uvicorn closes idle keep-alive connections, and can answer 503 above a connection count, but it
has no timeout for the request headers themselves: a client that connects and sends nothing, or
half a request line, holds its socket (and a file descriptor) forever, and enough of them make
every request fail, /readyz included. `HeaderTimeoutProtocol` closes any connection whose request
headers are not complete within `http_header_timeout_s` of the connection opening or of the
previous response ending.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from voiceid.config import Settings

PROBE_PATHS = {b"/healthz", b"/readyz"}
# Key under which a probe request's ASGI state carries (open connections, connection cap): what
# /readyz needs to say "saturated" when uvicorn is refusing connections.
CONNECTIONS_STATE = "voiceid_connections"
# Soft file-descriptor limit `voiceid serve` raises itself to (never above the hard limit): the
# common default of 1 024 is below what max_connections plus the database pool and model files need.
NOFILE_TARGET = 65_536

log = logging.getLogger(__name__)


def raise_fd_limit(target: int = NOFILE_TARGET) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `target` (as nginx's worker_rlimit_nofile
    does); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return int(soft)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools' protocol plus a deadline for each request's headers (class attribute: uvicorn
    instantiates the protocol itself, so the value is set on a subclass per server)."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            # No response: the peer has not sent a request to answer, only part of one.
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        if self.url.split(b"?", 1)[0] in PROBE_PATHS:
            # Health probes are answered even at the connection cap: an orchestrator that sees
            # /readyz fail under a flood would restart a server that is coping, making it worse.
            limit, self.limit_concurrency = self.limit_concurrency, None
            try:
                super().on_headers_complete()
            finally:
                self.limit_concurrency = limit
            # The request's task is created but has not run yet: it will see this.
            self.scope.setdefault("state", {})[CONNECTIONS_STATE] = (len(self.connections), limit)
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this keep-alive connection


def server_config(
    app: object, settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str | None = None
) -> uvicorn.Config:
    """The uvicorn configuration of `voiceid serve` (also used by the tests that attack it)."""
    protocol = type("HeaderTimeout", (HeaderTimeoutProtocol,), {"header_timeout_s": settings.http_header_timeout_s})
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=settings.http_keep_alive_s,
        limit_concurrency=settings.max_connections,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a client on this host could
        # then rotate the header to escape the per-address throttles. Only configured proxies.
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=[p.strip() for p in settings.trusted_proxies.split(",") if p.strip()] or None,
        log_level=log_level,
        lifespan="on",
    )


def serve(app: object, settings: Settings, host: str, port: int) -> None:
    files = raise_fd_limit()
    if files < settings.max_connections + 64:
        log.warning(
            "only %d file descriptors for %d connections (VOICEID_MAX_CONNECTIONS): raise `ulimit -n` "
            "or lower the setting",
            files,
            settings.max_connections,
        )
    uvicorn.Server(server_config(app, settings, host, port)).run()
