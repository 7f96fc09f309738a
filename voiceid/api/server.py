"""How `voiceid serve` runs uvicorn: bounded connections, bounded waits for request headers and
bounded header sizes (VOICEID_MAX_HEADER_BYTES, 431).

uvicorn closes idle keep-alive connections, and can answer 503 above a connection count, but it
has no timeout for the request headers themselves: a client that connects and sends nothing, or
half a request line, holds its socket (and a file descriptor) forever, and enough of them make
every request fail, /readyz included. `HeaderTimeoutProtocol` closes any connection whose request
headers are not complete within `http_header_timeout_s` of the connection opening or of the
previous response ending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from voiceid.api.errors import status_for
from voiceid.api.guard import headers_too_large
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
    """httptools' protocol plus a deadline and a size bound for each request's headers (class
    attributes: uvicorn instantiates the protocol itself, so the values are set on a subclass per
    server).

    httptools has no header size limit of its own (uvicorn's h11_max_incomplete_event_size bounds
    only the h11 implementation, which `voiceid serve` does not run): it buffers a header until its
    end, however long. So the bytes of each request's head are counted before they reach the
    parser, and the request is answered 431 HEADERS_TOO_LARGE, with the API's JSON error body, and
    its connection closed as soon as they would exceed `max_header_bytes`."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    _header_timer: asyncio.TimerHandle | None = None
    _reading_head = True  # the next bytes belong to a request line or headers
    _head_bytes = 0  # of the current request's head, fed so far
    _head_tail = b""  # the last bytes fed, for a CRLFCRLF split between two reads
    _heads_done = 0  # request heads parsed on this connection

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # Where the head ends, if in this read: its size is then known before the parser sees it.
            end = (self._head_tail + data).find(b"\r\n\r\n")
            size = self._head_bytes + (len(data) if end < 0 else end - len(self._head_tail) + 4)
            if size > self.max_header_bytes:
                self._refuse_head()
                return
        reading, heads = self._reading_head, self._heads_done
        super().data_received(data)
        if reading and heads == self._heads_done:  # the same head goes on in the next read
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data)[-3:]
        # Otherwise a head ended in this read. Bytes of a next request's head that followed it in the
        # same read (pipelining) are not counted; the app's HeaderGuard bounds that request exactly.

    def _refuse_head(self) -> None:
        error = headers_too_large(self.max_header_bytes)
        body = json.dumps(error.to_dict()).encode()
        head = [STATUS_LINE[status_for(error.code)]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self._cancel_header_timer()
        self.transport.write(b"".join(head))
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head, self._head_bytes, self._head_tail = True, 0, b""

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
        self._reading_head = False
        self._heads_done += 1
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
    app: object, settings: Settings, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    """The uvicorn configuration of `voiceid serve` (also used by the tests that attack it); `host` and
    `port` (the command's options) override VOICEID_HOST / VOICEID_PORT."""
    protocol = type(
        "HeaderTimeout",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": settings.http_header_timeout_s, "max_header_bytes": settings.max_header_bytes},
    )
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
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


def serve(app: object, settings: Settings, host: str | None = None, port: int | None = None) -> None:
    files = raise_fd_limit()
    if files < settings.max_connections + 64:
        log.warning(
            "only %d file descriptors for %d connections (VOICEID_MAX_CONNECTIONS): raise `ulimit -n` "
            "or lower the setting",
            files,
            settings.max_connections,
        )
    uvicorn.Server(server_config(app, settings, host, port)).run()
