"""Webhooks written as the attack (SSRF at 169.254.169.254, localhost:5432, [::1]) and the outbox:
signed, durable, retried with backoff, re-checked at delivery."""

from __future__ import annotations

import ipaddress
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.context import AppContext
from voiceid.statuses import DeliveryStatus
from voiceid.storage.models import WebhookDelivery
from voiceid.telephony_adapter.call_registry import CallRegistry
from voiceid.webhooks import signing
from voiceid.webhooks.outbox import backoff_s, deliver_due, enqueue, pin
from voiceid.webhooks.targets import WebhookPolicy, check_target

SECRET = "webhook-test-secret-0123456789"
ATTACKS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://localhost:5432/",
    "http://[::1]/",
    "http://127.0.0.1:8000/v1/api-keys",
    "http://[::ffff:127.0.0.1]/",
    "http://10.0.0.5/",
    "http://0.0.0.0:5432/",
]


def policy(hosts: tuple[str, ...] = ("*",), networks: tuple[str, ...] = (), allow_http: bool = True) -> WebhookPolicy:
    return WebhookPolicy(hosts, tuple(ipaddress.ip_network(n) for n in networks), allow_http)


def test_every_inward_target_is_refused_even_when_its_host_is_allow_listed():
    hosts = ("169.254.169.254", "localhost", "::1", "127.0.0.1", "::ffff:127.0.0.1", "10.0.0.5", "0.0.0.0")
    for url in ATTACKS:
        with pytest.raises(VoiceIdError) as caught:
            check_target(url, policy(hosts))
        assert caught.value.code is ErrorCode.WEBHOOK_NOT_ALLOWED, url


def test_a_name_is_checked_on_every_address_it_resolves_to():
    # DNS rebinding / split answers: one public and one private address is refused.
    mixed = policy(("hooks.example.com",))
    with pytest.raises(VoiceIdError):
        check_target("https://hooks.example.com/x", mixed, lambda host, port: ["93.184.216.34", "192.168.1.10"])
    assert check_target("https://hooks.example.com/x", mixed, lambda host, port: ["93.184.216.34"]) == ["93.184.216.34"]
    with pytest.raises(VoiceIdError):  # an unresolvable name is not delivered to
        check_target("https://hooks.example.com/x", mixed, lambda host, port: [])


def test_allow_list_scheme_and_explicit_networks():
    public = lambda host, port: ["93.184.216.34"]  # noqa: E731
    with pytest.raises(VoiceIdError, match="webhooks are off"):
        check_target("https://a.example.com/", policy(()), public)
    with pytest.raises(VoiceIdError, match="allow-list"):
        check_target("https://evil.example.net/", policy(("*.example.com",)), public)
    assert check_target("https://a.example.com/", policy(("*.example.com",)), public)
    with pytest.raises(VoiceIdError, match="https"):
        check_target("http://a.example.com/", policy(("a.example.com",), allow_http=False), public)
    with pytest.raises(VoiceIdError, match="credentials"):
        check_target("https://u:p@a.example.com/", policy(("a.example.com",)), public)
    # An operator may allow an internal receiver explicitly, and only that network.
    allowed = policy(("localhost",), networks=("127.0.0.0/8",))
    assert check_target("http://localhost:9/", allowed, lambda h, p: ["127.0.0.1"]) == ["127.0.0.1"]
    with pytest.raises(VoiceIdError):
        check_target("http://localhost:9/", allowed, lambda h, p: ["::1"])


def test_signature_round_trip_and_replay_window():
    body = signing.body_bytes({"call_id": "x", "outcome": {"decision": "ACCEPT"}})
    sig = signing.sign(SECRET.encode(), 1_700_000_000, body)
    assert signing.verify(SECRET.encode(), 1_700_000_000, body, sig, now=1_700_000_010)
    assert not signing.verify(SECRET.encode(), 1_700_000_000, body + b" ", sig, now=1_700_000_010)
    assert not signing.verify(b"other", 1_700_000_000, body, sig, now=1_700_000_010)
    assert not signing.verify(SECRET.encode(), 1_700_000_000, body, sig, now=1_700_000_000 + 3600)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n, 2.0, 20.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 20.0]


def _webhook_settings(**extra: object) -> dict[str, object]:
    return {
        "webhook_allowed_hosts": ["169.254.169.254", "localhost", "::1", "127.0.0.1"],
        "webhook_allow_http": True,
        "webhook_secret": SecretStr(SECRET),
        **extra,
    }


@pytest.mark.parametrize("url", ATTACKS[:3])
def test_put_call_with_an_inward_webhook_is_refused_and_stores_nothing(make_api, url):
    api = make_api(**_webhook_settings())
    api.put_speaker("caller-1")
    call = uuid.uuid4()
    r = api.client.put(f"/v1/calls/{call}", json={"speaker_id": "caller-1", "webhook_url": url}, headers=api.h("ivr"))
    assert r.status_code == 422 and r.json()["code"] == "WEBHOOK_NOT_ALLOWED", r.text
    assert api.client.get(f"/v1/calls/{call}", headers=api.h("ivr")).status_code == 404


def test_put_call_with_a_webhook_while_webhooks_are_off_is_refused(make_api):
    api = make_api()
    api.put_speaker("caller-1")
    r = api.client.put(
        f"/v1/calls/{uuid.uuid4()}",
        json={"speaker_id": "caller-1", "webhook_url": "https://hooks.example.com/x"},
        headers=api.h("ivr"),
    )
    assert r.status_code == 422 and r.json()["code"] == "WEBHOOK_NOT_ALLOWED"


class Receiver:
    """A webhook receiver on 127.0.0.1 answering with scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _outbox(api) -> list[WebhookDelivery]:
    with api.service.db.transaction() as session:
        return list(session.query(WebhookDelivery).all())


def test_outcome_and_webhook_are_stored_together_then_delivered_signed_with_retries(make_api, receiver):
    hook = receiver([500, 503, 200])
    api = make_api(**_webhook_settings(webhook_allowed_networks=["127.0.0.1/32"], webhook_backoff_s=10.0))
    api.put_speaker("caller-1")
    call = uuid.uuid4()
    r = api.client.put(
        f"/v1/calls/{call}", json={"speaker_id": "caller-1", "webhook_url": hook.url}, headers=api.h("ivr")
    )
    assert r.status_code == 201, r.text
    registry = CallRegistry(api.service.ctx, api.service.speakers)
    registry.claim(call)
    registry.finish(call, {"event": "decision", "decision": "ACCEPT"})
    [row] = _outbox(api)
    assert row.status == DeliveryStatus.PENDING and row.call_id == str(call)

    clock = Clock()
    settings: Settings = api.service.settings
    ctx = AppContext(settings, api.service.db, api.service.cipher, clock)
    clock.now = row.next_attempt_at
    assert deliver_due(ctx) == 1  # answered 500: retried after 10 s
    assert deliver_due(ctx) == 0  # not due yet
    clock.now += timedelta(seconds=10)
    assert deliver_due(ctx) == 1  # 503: next after 20 s
    clock.now += timedelta(seconds=19)
    assert deliver_due(ctx) == 0
    clock.now += timedelta(seconds=1)
    assert deliver_due(ctx) == 1
    [row] = _outbox(api)
    assert row.status == DeliveryStatus.DELIVERED and row.attempts == 3
    assert len(hook.received) == 3
    headers, body = hook.received[-1]
    payload = json.loads(body)
    assert payload["call_id"] == str(call) and payload["outcome"]["decision"] == "ACCEPT"
    stamp = int(headers[signing.TIMESTAMP_HEADER])
    assert signing.verify(SECRET.encode(), stamp, body, headers[signing.SIGNATURE_HEADER], now=stamp)
    assert headers[signing.DELIVERY_HEADER] == row.id


def test_delivery_rechecks_the_target_and_gives_up_after_max_attempts(make_api, receiver):
    hook = receiver([500] * 10)
    api = make_api(**_webhook_settings(webhook_allowed_networks=["127.0.0.1/32"], webhook_max_attempts=2))
    api.put_speaker("caller-1")
    registry = CallRegistry(api.service.ctx, api.service.speakers)
    first, second = uuid.uuid4(), uuid.uuid4()
    for call in (first, second):
        registry.bind(call, "caller-1", registry_mode(), hook.url, None)
        registry.claim(call)
        registry.finish(call, {"event": "decision", "decision": "REJECT"})
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(hours=1)
    # The operator withdraws the exception for 127.0.0.1: nothing more may be sent there.
    closed = api.service.settings.model_copy(update={"webhook_allowed_networks": []})
    assert deliver_due(AppContext(closed, api.service.db, api.service.cipher, clock)) == 2
    assert hook.received == []
    assert {r.status for r in _outbox(api)} == {DeliveryStatus.FAILED}
    assert all("loopback" in (r.last_error or "") for r in _outbox(api))


def test_delivery_goes_to_the_address_that_was_checked(make_api, receiver):
    """DNS rebinding: the name is resolved once, checked, and the POST goes to that address (the
    name itself resolves nowhere here), with the original Host header."""
    hook = receiver([200])
    port = hook.server.server_address[1]
    api = make_api(**_webhook_settings(webhook_allowed_hosts=["hooks.test"], webhook_allowed_networks=["127.0.0.1/32"]))
    api.put_speaker("caller-1")
    with api.service.db.transaction() as session:
        enqueue(session, "call-1", f"http://hooks.test:{port}/hook", {"call_id": "call-1"}, datetime.now(UTC))
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    ctx = AppContext(api.service.settings, api.service.db, api.service.cipher, clock)
    assert deliver_due(ctx, resolver=lambda host, p: ["127.0.0.1"] if host == "hooks.test" else []) == 1
    [(headers, _)] = hook.received
    assert headers["Host"] == f"hooks.test:{port}"
    assert [r.status for r in _outbox(api)] == [DeliveryStatus.DELIVERED]
    # A rebinding resolver now answering with a private address gets nothing sent.
    with api.service.db.transaction() as session:
        enqueue(session, "call-2", f"http://hooks.test:{port}/hook", {"call_id": "call-2"}, datetime.now(UTC))
    # due by the test's clock whatever the wall clock did meanwhile (a loaded CI machine took > 1 s once)
    clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert deliver_due(ctx, resolver=lambda host, p: ["10.1.2.3"]) == 1
    assert len(hook.received) == 1


def test_pinned_urls_keep_scheme_port_path_and_bracket_ipv6():
    pinned = pin("https://hooks.example.com:8443/a/b?x=1", "2001:db8::1")
    assert pinned.url == "https://[2001:db8::1]:8443/a/b?x=1"
    assert pinned.host == "hooks.example.com" and pinned.headers == {"Host": "hooks.example.com:8443"}
    assert pin("https://hooks.example.com/x", "93.184.216.34").url == "https://93.184.216.34/x"


def test_gives_up_after_max_attempts(make_api, receiver):
    hook = receiver([500] * 10)
    api = make_api(**_webhook_settings(webhook_allowed_networks=["127.0.0.1/32"], webhook_max_attempts=2))
    api.put_speaker("caller-1")
    registry = CallRegistry(api.service.ctx, api.service.speakers)
    call = uuid.uuid4()
    registry.bind(call, "caller-1", registry_mode(), hook.url, None)
    registry.claim(call)
    registry.finish(call, None)
    clock = Clock()
    ctx = AppContext(api.service.settings, api.service.db, api.service.cipher, clock)
    clock.now = datetime.now(UTC) + timedelta(hours=1)
    assert deliver_due(ctx) == 1
    clock.now += timedelta(hours=1)
    assert deliver_due(ctx) == 1
    clock.now += timedelta(hours=1)
    assert deliver_due(ctx) == 0
    [row] = _outbox(api)
    assert row.status == DeliveryStatus.FAILED and row.attempts == 2 and row.last_error == "HTTP 500"
    assert len(hook.received) == 2


def registry_mode():
    from voiceid.statuses import CallMode

    return CallMode.VERIFY
