"""Real sockets on 127.0.0.1: the app runs under uvicorn in a background thread (real WebSockets
and HTTP), on the session's real ECAPA engine and a fresh SQLite database per server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import func, select

from voiceid.api.app import create_app
from voiceid.api.server import server_config
from voiceid.config import Settings
from voiceid.engine import Engine
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.storage.crypto import generate_key_text
from voiceid.telephony_adapter.simulator import RATE, phone_line
from voiceid.testkit.servers import start_in_thread

ADMIN_KEY = "admin-telephony-key-8c6jdvqNWjf6E08HhmJBznvVkhwoG9RD"


@dataclass
class Live:
    http_url: str
    service: VoiceIdService
    keys: dict[str, str]

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://") + "/v1/streams/twilio"

    def http(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.http_url, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=60)

    def enrol(self, speaker_id: str, ulaw: bytes) -> dict:
        with self.http("enrolment") as http:
            r = http.put(f"/v1/speakers/{speaker_id}", json={"consent": {"granted": True, "text_version": "v1"}})
            assert r.status_code in (200, 201), r.text
            if not ulaw:
                return r.json()
            r = http.post(
                f"/v1/speakers/{speaker_id}/enrolment-audio", content=ulaw, headers={"Content-Type": "audio/basic"}
            )
            assert r.status_code == 200, r.text
            return r.json()

    def verify_http(self, speaker_id: str, ulaw: bytes) -> dict:
        with self.http("ivr") as http:
            r = http.post(
                f"/v1/speakers/{speaker_id}/verifications", content=ulaw, headers={"Content-Type": "audio/basic"}
            )
            assert r.status_code == 200, r.text
            return r.json()

    def count(self, model: type, *where: object) -> int:
        with self.service.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# A one-caller deployment decides in the raw-cosine regime, where a 6 s enrolment's genuine probe scores
# an LLR of about 2 (INCONCLUSIVE at the shipped pair): these tests are about how calls travel and when
# a stream decides, so the servers pin a pair the probes clear unless a test sets its own (the decision
# on the calibrated policy is tested in tests/api; the stream's score equals the HTTP score here).
TRANSPORT_PAIR = {"accept_threshold": 1.0, "reject_threshold": -1.0}


def _server_values(tmp_path: Path, n: int) -> dict[str, object]:
    """The settings every test server starts from: its own data dir, SQLite file, keys, a short
    enrolment and the transport threshold pair."""
    return {
        "data_dir": tmp_path / f"data{n}",
        "database_url": f"sqlite:///{tmp_path / f'voiceid{n}.db'}",
        "admin_key": SecretStr(ADMIN_KEY),
        "encryption_key": SecretStr(generate_key_text()),
        "enrol_min_speech_s": 4.0,
        **TRANSPORT_PAIR,
    }


def _launch(
    servers: list[tuple[uvicorn.Server, threading.Thread]], config: uvicorn.Config, sock: socket.socket
) -> Live:
    """Run `config` on `sock` in a thread until it has started; the service with a key per role."""
    servers.append(start_in_thread(config, sock))
    service: VoiceIdService = config.app.state.service  # type: ignore[attr-defined]
    keys = {"admin": ADMIN_KEY}
    for role in (Role.IVR, Role.ENROLMENT, Role.ANALYST):
        keys[role.value] = service.keys.create(role)[1]
    return Live(f"http://127.0.0.1:{sock.getsockname()[1]}", service, keys)


def _loopback_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def start_server(engine: Engine, settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Live]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: object) -> Live:
        values: dict[str, object] = {
            **_server_values(tmp_path, len(servers)),
            "inference_workers": 2,
            "inference_queue": 16,
            # The tests' webhook receivers listen on 127.0.0.1, which must be allowed explicitly; the
            # outbox is delivered by the jobs this (SQLite) server runs in-process.
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_allowed_networks": ["127.0.0.1/32"],
            "webhook_allow_http": True,
            "webhook_secret": SecretStr("telephony-webhook-secret-0123456789"),
            "webhook_poll_s": 0.2,
            **overrides,
        }
        app = create_app(settings.model_copy(update=values), engine=engine)
        return _launch(servers, uvicorn.Config(app, log_level="warning", lifespan="on"), _loopback_socket())

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="session")
def line(dev_files: dict[str, list[Path]]) -> Callable[[str, int, float], bytes]:
    """(speaker, utterance index, seconds) -> that much of the utterance as a μ-law phone line."""
    cache: dict[tuple[str, int], bytes] = {}

    def get(speaker: str, index: int, seconds: float) -> bytes:
        key = (speaker, index)
        if key not in cache:
            cache[key] = phone_line([dev_files[speaker][index]])
        return cache[key][: int(seconds * RATE)]

    return get


@pytest.fixture(scope="session")
def two_speakers(dev_files: dict[str, list[Path]]) -> tuple[str, str]:
    """A target and an impostor from the dev set whose μ-law scores are far from the decision band
    (about 0.55-0.77 and 0.06 against a 6 s voiceprint), so decisions in these tests are stable.
    Utterance 6 of the first and 2 of the second are long (8.1 s, 11.3 s) and used as probes."""
    a, b = "ls_1688", "ls_367"
    assert a in dev_files and b in dev_files
    return a, b


# Short stream deadlines keep the hostile-connection tests short.
FAST = {"stream_start_timeout_s": 1.0, "stream_idle_timeout_s": 1.0}


@pytest.fixture
def serve(engine: Engine, settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """`voiceid serve`'s own uvicorn configuration (voiceid.api.server), on a free loopback port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: object) -> Live:
        values: dict[str, object] = {**_server_values(tmp_path, len(servers)), **FAST, **overrides}
        app_settings = settings.model_copy(update=values)
        config = server_config(create_app(app_settings, engine=engine), app_settings, log_level="error")
        return _launch(servers, config, _loopback_socket())

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
