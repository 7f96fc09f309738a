"""Issue 10, finding 4, replayed: a one-character admin key, the old bootstrap key after the variable
changed, keys that cannot be listed, expired or revoked, and 300 wrong keys before the right one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from voiceid.api.app import create_app
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle, client_key
from voiceid.services.api_keys import estimated_bits
from voiceid.services.root import VoiceIdService
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.api import ADMIN_KEY, SESSION_SECRET
from voiceid.testkit.engines import NoInferenceEngine

NEW_ADMIN_KEY = "rotated-admin-Key-iy8rNXgGdcp_c2lnXfZ1OGimEJ6CvjR_"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "weak",
    [
        "x",
        "password",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababab",
        # Long and of many character classes, yet a sequence and a keyboard walk (issue 20).
        "abcdefghijklmnopqrstuvwxyz012345",
        "qwertyuiopasdfghjklzxcvbnm123456",
    ],
)
def test_a_weak_admin_key_stops_start_up_with_a_clear_message(make_api, settings, db_url, tmp_path, weak):
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path / "weak",
            "database_url": db_url,
            "admin_key": SecretStr(weak),
            "encryption_key": SecretStr(generate_key_text()),
            "session_secret": SecretStr(SESSION_SECRET),
            "keystore_url": f"sqlite:///{tmp_path / 'weak' / 'keystore.db'}",
        }
    )
    with pytest.raises(VoiceIdError) as err:
        VoiceIdService.from_settings(app_settings, engine=NoInferenceEngine())  # type: ignore[arg-type]
    assert err.value.code is ErrorCode.CONFIGURATION_ERROR
    assert "VOICEID_ADMIN_KEY is too weak" in err.value.message and "token_urlsafe" in err.value.message


def test_strength_estimate():
    import secrets

    # zxcvbn counts a random character as 10 guesses, so a 43-character token scores about 143 bits.
    assert min(estimated_bits(secrets.token_urlsafe(32)) for _ in range(20)) >= 128
    assert estimated_bits(ADMIN_KEY) >= 128
    assert estimated_bits("Tr0ub4dor&3") < 128


def test_changing_the_admin_key_revokes_the_old_bootstrap_key(make_api):
    api = make_api()
    assert api.client.get("/v1/api-keys", headers=bearer(ADMIN_KEY)).status_code == 200

    def restart(admin_key: str) -> TestClient:
        """The same deployment started again with another VOICEID_ADMIN_KEY."""
        changed = api.service.settings.model_copy(update={"admin_key": SecretStr(admin_key)})
        client = TestClient(create_app(changed, engine=NoInferenceEngine()))  # type: ignore[arg-type]
        client.__enter__()
        return client

    rotated = restart(NEW_ADMIN_KEY)
    try:
        assert rotated.get("/v1/api-keys", headers=bearer(ADMIN_KEY)).status_code == 401
        keys = rotated.get("/v1/api-keys", headers=bearer(NEW_ADMIN_KEY)).json()
        bootstrap = [k for k in keys if k["bootstrap"]]
        assert [k["active"] for k in bootstrap] == [False, True]
        assert bootstrap[0]["revoked_at"] is not None
    finally:
        rotated.__exit__(None, None, None)
    # Putting the old value back does not resurrect the revoked key: start-up refuses instead.
    with pytest.raises(VoiceIdError, match="was revoked"):
        restart(ADMIN_KEY)


def test_list_revoke_and_last_use(make_api):
    api = make_api()
    keys = {k["key_id"]: k for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json()}
    assert {k["role"] for k in keys.values()} == {"admin", "ivr", "enrolment", "analyst"}
    assert all("key" not in k and "key_hash" not in k for k in keys.values())
    ivr = next(k for k in keys.values() if k["role"] == "ivr")
    assert ivr["last_used_at"] is None
    api.client.post("/v1/speakers/nobody/verifications", content=b"x", headers=api.h("ivr"))
    after = {k["key_id"]: k for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json()}
    assert after[ivr["key_id"]]["last_used_at"] is not None

    assert api.client.get("/v1/api-keys", headers=api.h("analyst")).status_code == 403
    assert api.client.delete(f"/v1/api-keys/{ivr['key_id']}", headers=api.h("analyst")).status_code == 403
    assert api.client.delete(f"/v1/api-keys/{ivr['key_id']}", headers=api.h("admin")).status_code == 204
    assert api.client.delete(f"/v1/api-keys/{ivr['key_id']}", headers=api.h("admin")).status_code == 204  # idempotent
    refused = api.client.post("/v1/speakers/nobody/verifications", content=b"x", headers=api.h("ivr"))
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    missing = api.client.delete("/v1/api-keys/nope", headers=api.h("admin"))
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    listed = {k["key_id"]: k for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json()}
    assert listed[ivr["key_id"]]["active"] is False and listed[ivr["key_id"]]["revoked_at"]


def test_expiry(make_api):
    api = make_api()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = api.client.post("/v1/api-keys", json={"role": "ivr", "expires_at": soon}, headers=api.h("admin"))
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert api.client.post("/v1/speakers/nobody/verifications", content=b"x", headers=bearer(key)).status_code != 401
    api.service.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
    expired = api.client.post("/v1/speakers/nobody/verifications", content=b"x", headers=bearer(key))
    assert expired.status_code == 401
    api.service.clock = lambda: datetime.now(UTC)
    for bad in ((datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "2030-01-01T00:00:00", "soon"):
        r = api.client.post("/v1/api-keys", json={"role": "ivr", "expires_at": bad}, headers=api.h("admin"))
        assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST", bad


def test_300_wrong_keys_then_the_right_one_is_throttled(make_api):
    api = make_api(auth_fail_limit=10, auth_fail_window_s=600)
    attacker = TestClient(api.client.app, client=("198.51.100.7", 40000))
    codes = [attacker.get("/v1/api-keys", headers=bearer(f"vid_wrong{i:04d}")).status_code for i in range(300)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    right = attacker.get("/v1/api-keys", headers=api.h("admin"))
    assert right.status_code == 429 and right.json()["code"] == "AUTH_THROTTLED"
    assert 1 <= int(right.headers["Retry-After"]) <= 600
    # Other addresses are not locked out by the attacker.
    assert api.client.get("/v1/api-keys", headers=api.h("admin")).status_code == 200


def test_review_login_is_throttled(make_api):
    api = make_api(auth_fail_limit=5, auth_fail_window_s=600)
    attacker = TestClient(api.client.app, client=("198.51.100.8", 40000))

    def sign_in(key: str) -> int:
        attacker.get("/review/login")
        csrf = attacker.cookies.get("voiceid_review_login")
        return attacker.post("/review/login", data={"csrf": csrf, "api_key": key}, follow_redirects=False).status_code

    assert [sign_in(f"guess-{i}") for i in range(8)] == [401] * 5 + [429] * 3
    assert sign_in(api.keys["analyst"]) == 429
    other = TestClient(api.client.app, client=("198.51.100.9", 40000))
    other.get("/review/login")
    ok = other.post(
        "/review/login",
        data={"csrf": other.cookies.get("voiceid_review_login"), "api_key": api.keys["analyst"]},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_throttle_memory_is_bounded_and_windows_end():
    now = [0.0]
    throttle = FailureThrottle(limit=3, window_s=60, max_clients=100, clock=lambda: now[0])
    for i in range(10_000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) == 100
    for _ in range(3):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == pytest.approx(60)
    now[0] = 61
    assert throttle.retry_after("192.0.2.1") is None
    # A whole IPv6 /64 counts as one client; IPv4-mapped addresses count as the IPv4 one.
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_cli_keys_list_and_revoke(make_api, monkeypatch, tmp_path, db_url, settings):
    api = make_api()
    from voiceid.cli import app
    from voiceid.config import get_settings

    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VOICEID_DATABASE_URL", db_url)
    monkeypatch.setenv("VOICEID_ENCRYPTION_KEY", api.service.settings.encryption_key.get_secret_value())
    monkeypatch.setenv("VOICEID_SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("VOICEID_KEYSTORE_URL", str(api.service.settings.keystore_url))
    get_settings.cache_clear()
    try:
        listed = CliRunner().invoke(app, ["keys", "list"])
        assert listed.exit_code == 0, listed.output
        rows = [json.loads(line) for line in listed.output.splitlines()]
        ivr = next(r for r in rows if r["role"] == "ivr")
        revoked = CliRunner().invoke(app, ["keys", "revoke", ivr["key_id"]])
        assert revoked.exit_code == 0, revoked.output
        assert api.client.post("/v1/speakers/x/verifications", content=b"x", headers=api.h("ivr")).status_code == 401
        unknown = CliRunner().invoke(app, ["keys", "revoke", "no-such-key"])
        assert unknown.exit_code == 2 and "NOT_FOUND" in unknown.output
        created = CliRunner().invoke(app, ["keys", "create", "--role", "ivr", "--expires-at", "2099-01-01T00:00:00"])
        assert created.exit_code == 0, created.output
    finally:
        get_settings.cache_clear()


def test_serve_refuses_a_weak_admin_key_before_listening(monkeypatch, tmp_path):
    from voiceid.cli import app
    from voiceid.config import get_settings

    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEID_ADMIN_KEY", "change-me-admin-key")  # the old README example
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "CONFIGURATION_ERROR" in result.output and "VOICEID_ADMIN_KEY is too weak" in result.output
