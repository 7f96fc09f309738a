"""Issue 10 point 7 over HTTP: a PostgreSQL outage, /metrics exposure, and a second IVR key
trying to take over another key's call binding."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from voiceid.api.app import create_app
from voiceid.config import Settings
from voiceid.services.views import Role
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import ADMIN_KEY, SESSION_SECRET
from voiceid.testkit.engines import NoInferenceEngine
from voiceid.testkit.postgres import POSTGRES_ADMIN_DSN


class TcpProxy:
    """127.0.0.1:<port> -> upstream, which can be cut (every connection reset, new ones refused)
    and restored: the database "goes away" for the service exactly as in a network or server outage."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()


@pytest.fixture
def postgres_behind_proxy() -> Iterator[tuple[str, TcpProxy]]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"voiceid_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    proxy = TcpProxy((admin.info.host, int(admin.info.port)))
    proxy.start()
    try:
        yield f"postgresql+psycopg://{admin.info.user}@127.0.0.1:{proxy.port}/{name}?connect_timeout=2", proxy
    finally:
        proxy.cut()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_postgres_outage_is_503_with_retry_after_then_recovers(
    postgres_behind_proxy: tuple[str, TcpProxy], settings: Settings, tmp_path
) -> None:
    url, proxy = postgres_behind_proxy
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "database_url": url,
            "admin_key": SecretStr(ADMIN_KEY),
            "encryption_key": SecretStr(generate_key_text()),
            "session_secret": SecretStr(SESSION_SECRET),
            "keystore_url": f"sqlite:///{tmp_path / 'keystore.db'}",
        }
    )
    with TestClient(create_app(app_settings, engine=NoInferenceEngine())) as client:  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        body = {"consent": {"granted": True, "text_version": "v1"}}
        assert client.put("/v1/speakers/before", json=body, headers=headers).status_code == 201
        proxy.cut()
        for _ in range(3):  # pooled connections die first, then new ones are refused: both are an outage
            r = client.put("/v1/speakers/during", json=body, headers=headers)
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "DATABASE_UNAVAILABLE"
            assert int(r.headers["retry-after"]) >= 1
            assert "0x" not in r.text and "psycopg" not in r.text
        assert client.get("/readyz").status_code == 503
        proxy.start()
        statuses = [client.get("/v1/speakers/before", headers=headers).status_code for _ in range(3)]
        assert statuses[-1] == 200, statuses
        # Nothing was half-written during the outage.
        assert client.get("/v1/speakers/during", headers=headers).status_code == 404


def _app(make_api, **overrides):
    return make_api(**overrides)


def test_metrics_default_needs_a_key(make_api) -> None:
    api = make_api()
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=api.h("ivr")).status_code == 403
    assert api.client.get("/metrics", headers=api.h("admin")).status_code == 200


def test_metrics_scraper_token(make_api) -> None:
    api = make_api(metrics_key=SecretStr("scrape-token-0123456789abcdef"))
    assert (
        api.client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789abcdef"}).status_code == 200
    )
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize(("access", "anonymous"), [("off", 404), ("open", 200)])
def test_metrics_off_or_open(make_api, access: str, anonymous: int) -> None:
    api = make_api(metrics_access=access)
    assert api.client.get("/metrics").status_code == anonymous
    assert api.client.get("/metrics", headers=api.h("admin")).status_code == anonymous


def test_second_ivr_key_cannot_rebind_another_keys_call(make_api) -> None:
    api = make_api()
    api.put_speaker("victim")
    api.put_speaker("mule")
    other_ivr = api.service.keys.create(Role.IVR)[1]
    call = uuid.uuid4()
    assert api.client.put(f"/v1/calls/{call}", json={"speaker_id": "victim"}, headers=api.h("ivr")).status_code == 201
    r = api.client.put(
        f"/v1/calls/{call}", json={"speaker_id": "mule"}, headers={"Authorization": f"Bearer {other_ivr}"}
    )
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert api.client.get(f"/v1/calls/{call}", headers=api.h("ivr")).json()["speaker_id"] == "victim"
    # The key that bound it may still re-bind it before the audio arrives.
    assert api.client.put(f"/v1/calls/{call}", json={"speaker_id": "mule"}, headers=api.h("ivr")).status_code == 200
