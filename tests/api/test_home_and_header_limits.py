"""Issue 21: `GET /` answers a newcomer with links (HTML for a browser, JSON for a client), and
request headers are bounded (VOICEID_MAX_HEADER_BYTES, 431 HEADERS_TOO_LARGE) both in the app and
in `voiceid serve`'s own uvicorn protocol, which stops reading a huge head instead of buffering it."""

from __future__ import annotations

import http.client
import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from voiceid.api.app import create_app
from voiceid.api.home import wants_html
from voiceid.api.server import server_config
from voiceid.config import Settings
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import ADMIN_KEY
from voiceid.testkit.engines import NoInferenceEngine
from voiceid.testkit.servers import start_in_thread

LIMIT = 16 * 1024
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_home_links_to_docs_review_and_readiness_without_a_key(make_api) -> None:
    api = make_api()
    as_json = api.client.get("/", headers={"Accept": "application/json"})
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    links = {name: link["href"] for name, link in as_json.json()["links"].items()}
    assert links == {"docs": "/docs", "review": "/review", "readyz": "/readyz"}
    assert api.client.get("/").json() == as_json.json()  # no Accept (curl): JSON too
    page = api.client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path in ("/docs", "/review", "/readyz"):
        assert f'href="{path}"' in page.text
    assert page.headers["x-frame-options"] == "DENY"  # an HTML page: the desk's hardening headers
    assert "key" not in page.text.lower().replace("api key", "")  # names how to sign in, holds no secret
    for path in ("/docs", "/readyz"):
        assert api.client.get(path).status_code in (200, 503)  # the links lead somewhere


def test_accept_negotiation() -> None:
    assert wants_html(BROWSER_ACCEPT)
    assert not wants_html("application/json")
    assert not wants_html(None) and not wants_html("*/*")
    assert not wants_html("text/html;q=0.5, application/json")
    assert wants_html("application/json;q=0.1, text/html")


def test_the_app_answers_431_above_the_header_limit(make_api) -> None:
    api = make_api()
    fits = api.client.get("/healthz", headers={"X-Padding": "a" * (LIMIT - 1024)})
    assert fits.status_code == 200
    big = api.client.get("/healthz", headers={"X-Padding": "a" * LIMIT})
    assert big.status_code == 431 and big.json()["code"] == "HEADERS_TOO_LARGE"
    assert big.headers["connection"] == "close"
    small = make_api(max_header_bytes=4096)
    r = small.client.get("/v1/verifications", headers={**small.h("analyst"), "Cookie": "c=" + "x" * 5000})
    assert r.status_code == 431 and "4096" in r.json()["message"]


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The app under `voiceid serve`'s uvicorn configuration (api/server.py) on a free port."""
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "database_url": f"sqlite:///{tmp_path / 'voiceid.db'}",
            "admin_key": SecretStr(ADMIN_KEY),
            "encryption_key": SecretStr(generate_key_text()),
            "score_norm": "none",
        }
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(app_settings, engine=NoInferenceEngine())  # type: ignore[arg-type]
    server, thread = start_in_thread(server_config(app, app_settings, log_level="error"), sock)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(30)


def _response(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(10)
    while True:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def test_serve_refuses_a_1_mb_header_before_reading_it(live: tuple[str, int]) -> None:
    chunk = 8 * 1024
    with socket.create_connection(live) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        sent = 0
        answered = False
        while sent < 1024 * 1024:
            try:
                conn.sendall(b"a" * chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
            # Past the limit, give the server a moment to answer before sending more.
            readable, _, _ = select.select([conn], [], [], 0.2 if sent > LIMIT else 0)
            if readable:
                answered = True
                break
        reply = _response(conn)
    assert answered or reply, "no answer while the header was still being sent"
    # The server answered within a few reads of the limit: it never took in the megabyte.
    assert sent <= LIMIT + 4 * chunk, sent
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), reply[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "HEADERS_TOO_LARGE"


def test_serve_counts_each_request_head_on_a_keep_alive_connection(live: tuple[str, int]) -> None:
    """A body (here 200 KiB of JSON) is not a head: the request after it on the same connection, and
    a head just under the limit, are served."""
    conn = http.client.HTTPConnection(*live, timeout=30)
    try:
        body = json.dumps({"padding": "b" * 200_000})
        conn.request("POST", "/review/login", body=body, headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        assert first.status < 500 and first.getheader("connection") != "close"
        conn.request("GET", "/healthz", headers={"X-Padding": "c" * (LIMIT - 1024)})
        second = conn.getresponse()
        assert second.status == 200, second.read()
        second.read()
        conn.request("GET", "/healthz", headers={"X-Padding": "c" * (LIMIT + 10)})
        third = conn.getresponse()
        assert third.status == 431 and json.loads(third.read())["code"] == "HEADERS_TOO_LARGE"
    finally:
        conn.close()
