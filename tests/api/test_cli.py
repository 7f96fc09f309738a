"""The CLI drives the same service as the API (its own SQLite/PostgreSQL per the environment)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from voiceid.cli import app
from voiceid.config import get_settings
from voiceid.storage.crypto import generate_key_text


@pytest.fixture
def cli_env(monkeypatch, tmp_path, db, db_url, settings):
    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEID_DATABASE_URL", db_url)
    monkeypatch.setenv("VOICEID_MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("VOICEID_ENROL_MIN_SPEECH_S", "6")
    # Shared secrets: required with PostgreSQL, where several processes use one database.
    monkeypatch.setenv("VOICEID_ENCRYPTION_KEY", generate_key_text())
    monkeypatch.setenv("VOICEID_SESSION_SECRET", "cli-test-session-secret-0123456789-abcdef")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_keys_create(cli_env, db):
    result = CliRunner().invoke(app, ["keys", "create", "--role", "ivr"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["role"] == "ivr" and out["key"].startswith("vid_")
    bad = CliRunner().invoke(app, ["keys", "create", "--role", "root"])
    assert bad.exit_code != 0


@pytest.mark.model
@pytest.mark.devdata
def test_speakers_enrol_and_verify(cli_env, dev_files, engine):
    a, b = sorted(dev_files)[:2]
    runner = CliRunner()
    enrol = runner.invoke(
        app,
        [
            "speakers",
            "enrol",
            "cli-1",
            str(dev_files[a][3]),
            str(dev_files[a][4]),
            str(dev_files[a][5]),
            "--consent-version",
            "v1",
        ],
    )
    assert enrol.exit_code == 0, enrol.output
    assert "ENROLLED" in enrol.output
    same = runner.invoke(app, ["speakers", "verify", "cli-1", str(dev_files[a][6])])
    assert same.exit_code == 0, same.output
    assert json.loads(same.output)["decision"] == "ACCEPT"
    missing = runner.invoke(app, ["speakers", "verify", "nobody", str(dev_files[b][1])])
    assert missing.exit_code == 2 and "SPEAKER_NOT_FOUND" in missing.output


def test_purge_command_removes_expired_attempt_embeddings(cli_env, db):
    from datetime import UTC, datetime, timedelta

    from voiceid.storage import models as m

    now = datetime.now(UTC)
    with db.transaction() as session:
        for vid, expires in (("expired", now - timedelta(days=1)), ("current", now + timedelta(days=1))):
            session.add(
                m.AttemptEmbedding(
                    verification_id=vid,
                    speaker_ref="someone",
                    model_version="v",
                    ciphertext=b"\x00" * 16,
                    created_at=now - timedelta(days=30),
                    expires_at=expires,
                )
            )
    result = CliRunner().invoke(app, ["purge"])
    assert result.exit_code == 0, result.output
    # At least ours; rows other tests left in the shared database may have expired too.
    assert json.loads(result.output)["purged_attempt_embeddings"] >= 1
    with db.transaction() as session:
        # The database is shared with the other tests of the session: look at this test's rows only.
        mine = session.query(m.AttemptEmbedding).filter(m.AttemptEmbedding.verification_id.in_(["expired", "current"]))
        assert [row.verification_id for row in mine] == ["current"]
