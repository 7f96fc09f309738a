"""An ASGI app served by uvicorn in a thread on a free loopback port (browser, desk, telephony and
HTTP-edge tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_in_thread(
    config: uvicorn.Config, sock: socket.socket | None = None, start_timeout_s: float = 60.0
) -> tuple[uvicorn.Server, threading.Thread]:
    """Run `config` (on `sock` when given, else on its host and port) in a daemon thread and wait until
    it has started; the caller stops it (`server.should_exit = True`, then join the thread)."""
    server = uvicorn.Server(config)
    kwargs = {} if sock is None else {"sockets": [sock]}
    thread = threading.Thread(target=server.run, kwargs=kwargs, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread


@contextmanager
def serve_in_thread(app: Any, start_timeout_s: float = 60.0) -> Iterator[str]:
    """Run `app` until the block ends; yields its base URL. Fails if it does not start in time."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server, thread = start_in_thread(config, start_timeout_s=start_timeout_s)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
