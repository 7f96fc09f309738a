"""A server started with no key at all says how to create the first admin key."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from voiceid.api.app import create_app
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.engines import NoInferenceEngine


def start(settings, tmp_path, **overrides):
    values = {"data_dir": tmp_path / "data", "database_url": None, "encryption_key": SecretStr(generate_key_text())}
    app = create_app(settings.model_copy(update={**values, **overrides}), engine=NoInferenceEngine())  # type: ignore[arg-type]
    return TestClient(app)


def test_first_start_tells_how_to_create_the_first_admin_key(settings, tmp_path, capsys):
    with start(settings, tmp_path) as client:
        assert client.get("/v1/verifications").status_code == 401
    err = capsys.readouterr().err
    assert "no API key exists yet" in err and "voiceid keys create --role admin" in err
    assert "VOICEID_ADMIN_KEY" in err


def test_no_message_once_a_key_exists(settings, tmp_path, capsys):
    with start(settings, tmp_path, admin_key=SecretStr("admin-first-start-key-XYFIQrPCwVZQ2CEgdp6xPVtI_u9cro89")):
        pass
    assert "no API key exists yet" not in capsys.readouterr().err
