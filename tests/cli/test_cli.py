"""The CLI drives the same service as the API (its own SQLite/PostgreSQL per the environment)."""

from __future__ import annotations

import json

import numpy as np
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
    monkeypatch.setenv("VOICEID_KEYSTORE_URL", f"sqlite:///{tmp_path / 'keystore.db'}")
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


def test_ivr_simulate_without_a_server_says_so_without_a_traceback(cli_env, tmp_path):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "call.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 8000)
    for protocol in ("http", "twilio"):
        result = CliRunner().invoke(
            app,
            [
                "ivr",
                "simulate",
                str(wav),
                "--speaker",
                "nobody",
                "--protocol",
                protocol,
                "--url",
                "http://127.0.0.1:9",
                "--api-key",
                "k",
                "--speed",
                "1000",
            ],
        )
        assert result.exit_code == 2, result.output
        assert "cannot reach the service at http://127.0.0.1:9" in result.output
        assert "Traceback" not in result.output


def test_simulation_errors_carry_the_service_error_code():
    import httpx

    from voiceid.cli import simulation_error

    request = httpx.Request("POST", "http://svc/v1/calls")
    response = httpx.Response(
        404, json={"code": "SPEAKER_NOT_FOUND", "message": "no speaker 'nobody'"}, request=request
    )
    exc = httpx.HTTPStatusError("404", request=request, response=response)
    assert simulation_error(exc, "http://svc") == "the service answered 404 (SPEAKER_NOT_FOUND: no speaker 'nobody')"


def test_torch_jit_deprecation_warning_is_not_printed():
    import subprocess
    import sys

    code = "from voiceid.audio.vad import _model; from voiceid.config import VadBackend; _model(VadBackend.TORCH)"
    done = subprocess.run(
        [sys.executable, "-W", "always::FutureWarning", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "torch.jit.load" not in done.stderr


def test_eval_with_a_manifest_naming_missing_files_says_where_it_looked(cli_env, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    manifest = folder / "manifest.csv"
    manifest.write_text("utt_id,speaker_id,path\nu1,s1,s1/u1.flac\nu2,s1,s1/u2.flac\n")
    result = CliRunner().invoke(app, ["eval", "--manifest", str(manifest), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2, result.output
    assert "2 of 2 audio files" in result.output and "manifest's folder" in result.output
    assert "Traceback" not in result.output


def test_index_snapshot_and_status(cli_env, db, monkeypatch):
    from voiceid.storage import repositories as repo
    from voiceid.storage.keys import vault_from_settings
    from voiceid.storage.models import utcnow

    monkeypatch.setenv("VOICEID_SEARCH_EXACT_MAX", "5")
    monkeypatch.setenv("VOICEID_INDEX_SNAPSHOT_MIN_VECTORS", "8")
    get_settings.cache_clear()
    vault = vault_from_settings(get_settings())
    rng = np.random.default_rng(0)
    with db.transaction() as session:
        for i in range(10):
            repo.insert_speaker_if_absent(session, f"cli-idx-{i}", "ENROLLED", utcnow())
            speaker = repo.get_speaker(session, f"cli-idx-{i}")
            assert speaker is not None
            repo.set_voiceprint(session, vault, speaker, rng.standard_normal(192).astype("float32"), "cli-v")
    vault.close()
    runner = CliRunner()
    wrote = runner.invoke(app, ["index", "snapshot"])
    assert wrote.exit_code == 0, wrote.output
    assert json.loads(wrote.output) == {"job": "index-snapshot", "status": "ran", "handled": 1}
    status = runner.invoke(app, ["index", "status"])
    assert status.exit_code == 0, status.output
    (row,) = [json.loads(line) for line in status.output.splitlines()]
    assert row["kind"] == "voiceprint" and row["model_version"] == "cli-v" and row["vectors"] == 10
    assert row["state"] == "complete" and row["bytes"] > 10 * 192 * 4
    assert json.loads(runner.invoke(app, ["index", "snapshot"]).output)["handled"] == 0  # nothing moved


def test_eval_refuses_centring_without_the_population(cli_env, tmp_path):
    """The centred cosine centres on the enrolled population: with only the shipped cohort there is none,
    and `voiceid eval` says so (exit 2, no traceback) instead of failing inside the scorer."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("utt_id,speaker_id,path\nu1,s1,s1/u1.flac\n")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--manifest",
            str(manifest),
            "--norm",
            "centre",
            "--cohort",
            "builtin",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--cohort population" in result.output
    assert "Traceback" not in result.output
