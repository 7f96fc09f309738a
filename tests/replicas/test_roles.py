"""Process roles: shared secrets enforced, `db upgrade` safe when run by several at once, worker jobs
run by one worker at a time (advisory locks / flock)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.context import AppContext, check_shared_configuration
from voiceid.services.upgrade import check_decision_data, current_revision, head_revision, upgrade
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.storage.db import Database
from voiceid.storage.models import ApiKey, AttemptEmbedding
from voiceid.worker.jobs import JOBS
from voiceid.worker.locks import job_lock
from voiceid.worker.registry import Job
from voiceid.worker.runner import TickStatus, Worker

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/nothing"
SECRET = "a-session-secret-of-at-least-32-chars"
KEYSTORE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/keys"  # shared by the replicas, never read here


def test_postgresql_refuses_per_host_secrets(settings: Settings):
    for missing in ("encryption_key", "session_secret", "keystore_url"):
        values: dict[str, object] = {
            "database_url": PG_URL,
            "encryption_key": SecretStr(generate_key_text()),
            "session_secret": SecretStr(SECRET),
            "keystore_url": KEYSTORE_URL,
        }
        values[missing] = None
        with pytest.raises(VoiceIdError) as caught:
            check_shared_configuration(settings.model_copy(update=values))
        assert caught.value.code is ErrorCode.CONFIGURATION_ERROR
        assert f"VOICEID_{missing.upper()}" in caught.value.message
    check_shared_configuration(
        settings.model_copy(
            update={
                "database_url": PG_URL,
                "encryption_key": SecretStr(generate_key_text()),
                "session_secret": SecretStr(SECRET),
                "keystore_url": KEYSTORE_URL,
            }
        )
    )
    # SQLite (one host) may keep its key files.
    check_shared_configuration(settings.model_copy(update={"database_url": None, "encryption_key": None}))


def test_the_service_itself_refuses_to_start_on_postgresql_without_them(settings: Settings):
    from voiceid.services.root import VoiceIdService

    with pytest.raises(VoiceIdError) as caught:
        VoiceIdService.from_settings(settings.model_copy(update={"database_url": PG_URL, "encryption_key": None}))
    assert caught.value.code is ErrorCode.CONFIGURATION_ERROR


def test_webhooks_on_need_a_signing_secret(settings: Settings):
    with pytest.raises(VoiceIdError, match="WEBHOOK_SECRET"):
        check_shared_configuration(settings.model_copy(update={"webhook_allowed_hosts": ["hooks.example.com"]}))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path, fresh_postgres) -> str:
    return f"sqlite:///{tmp_path / 'v.db'}" if request.param == "sqlite" else fresh_postgres()


def test_concurrent_db_upgrades_with_admin_bootstrap_do_not_race(empty_db_url: str, settings: Settings):
    cfg = settings.model_copy(
        update={
            "database_url": empty_db_url,
            "admin_key": SecretStr("bootstrap-admin-key-3XDnmjCq5MGE9TXlvL4h7Rl1kR8PVZFg"),
        }
    )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        db = Database(empty_db_url)
        try:
            barrier.wait()
            upgrade(db, cfg, {"cohort": "c1", "calibration": "k1"})
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    db = Database(empty_db_url)
    assert current_revision(db) == head_revision()
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
    # Running it again changes nothing (idempotent); pins stay unless re-pinned.
    report = upgrade(db, cfg, {"cohort": "c2", "calibration": "k1"})
    assert report.from_revision == report.to_revision == head_revision()
    assert report.pins == {"cohort": "c1", "calibration": "k1"}
    # A replica holding other decision data refuses to start on a shared database...
    with pytest.raises(VoiceIdError) as caught:
        check_decision_data(db, {"cohort": "c2", "calibration": "k1"}, strict=True)
    assert caught.value.code is ErrorCode.CONFIGURATION_ERROR and "cohort" in caught.value.message
    # ... until the new release is pinned.
    assert upgrade(db, cfg, {"cohort": "c2", "calibration": "k1"}, repin=True).pins["cohort"] == "c2"
    assert check_decision_data(db, {"cohort": "c2", "calibration": "k1"}, strict=True)["cohort"] == "c2"
    db.dispose()


def test_a_job_tick_runs_in_one_worker_at_a_time(empty_db_url: str, settings: Settings, tmp_path):
    cfg = settings.model_copy(update={"database_url": empty_db_url, "data_dir": tmp_path})
    first, second = Database(empty_db_url), Database(empty_db_url)
    with job_lock(first, "demo", tmp_path / "locks") as a:
        with job_lock(second, "demo", tmp_path / "locks") as b:
            assert a is True and b is False
        with job_lock(second, "other", tmp_path / "locks") as c:
            assert c is True
    with job_lock(second, "demo", tmp_path / "locks") as again:
        assert again is True  # released when the holder's block ended

    # Two workers, one job that takes a while: while one runs the tick, the other skips it.
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(ctx: AppContext) -> int:
        runs.append("ran")
        started.set()
        release.wait(30)
        return 1

    job = Job("slow", slow, every=lambda s: 0.0)
    w1 = Worker(AppContext(cfg, first, None), [job])  # type: ignore[arg-type]
    w2 = Worker(AppContext(cfg, second, None), [job])  # type: ignore[arg-type]
    t = threading.Thread(target=w1.tick, args=(job,))
    t.start()
    assert started.wait(30)
    assert w2.tick(job).status is TickStatus.SKIPPED
    release.set()
    t.join(30)
    assert w2.tick(job).status is TickStatus.RAN and runs == ["ran", "ran"]
    first.dispose()
    second.dispose()


def test_a_failing_job_is_reported_and_does_not_stop_the_others(empty_db_url: str, settings: Settings, tmp_path):
    cfg = settings.model_copy(update={"database_url": empty_db_url, "data_dir": tmp_path})
    db = Database(empty_db_url)

    def broken(ctx: AppContext) -> int:
        raise RuntimeError("boom")

    worker = Worker(
        AppContext(cfg, db, None), [Job("broken", broken, lambda s: 60.0), Job("ok", lambda c: 2, lambda s: 60.0)]
    )  # type: ignore[arg-type]
    results = worker.run_due()
    assert [(r.job, r.status, r.handled) for r in results] == [
        ("broken", TickStatus.FAILED, 0),
        ("ok", TickStatus.RAN, 2),
    ]
    assert worker.run_due() == []  # not due again before its interval
    db.dispose()


def test_registered_jobs_include_retention_and_webhooks_and_the_purge_job_works(
    empty_db_url: str, settings: Settings, tmp_path
):
    assert {"retention-purge", "webhook-outbox", "change-feed-prune"} <= {job.name for job in JOBS}
    cfg = settings.model_copy(
        update={"database_url": empty_db_url, "data_dir": tmp_path, "encryption_key": SecretStr(generate_key_text())}
    )
    db = Database(empty_db_url)
    upgrade(db, cfg)
    ctx = AppContext.from_settings(
        cfg.model_copy(
            update={"session_secret": SecretStr(SECRET), "keystore_url": f"sqlite:///{tmp_path / 'keystore.db'}"}
        )
    )
    now = datetime.now(UTC)
    with db.transaction() as session:
        # Attempt embeddings are sealed under the claimed speaker's data key: the speaker must exist.
        repo.insert_speaker_if_absent(session, "spk", "ENROLLED", now)
        for i, expires in enumerate((now - timedelta(days=1), now + timedelta(days=1))):
            fraud_repo.add_attempt_embedding(
                session, ctx.cipher, f"v{i}", "spk", np.ones(192, np.float32), "m", now, expires
            )
    purge = next(job for job in JOBS if job.name == "retention-purge")
    assert Worker(ctx, [purge]).tick(purge).handled == 1
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AttemptEmbedding)) == 1
    ctx.close()
    db.dispose()


@pytest.mark.postgres
def test_db_upgrade_pins_what_replicas_on_their_defaults_run(fresh_postgres, monkeypatch, tmp_path, settings):
    """Issue 20: `db upgrade` used to pin the fp32 model's decision data, so replicas on the default
    backend (auto -> torch-bf16 where the CPU has it) refused to start, even after --repin."""
    import json

    from typer.testing import CliRunner

    from voiceid.cli import app
    from voiceid.config import InferenceBackend, get_settings
    from voiceid.models.registry import backend_model_version, concrete_backend
    from voiceid.testkit.api import SESSION_SECRET
    from voiceid.verify.policy import build_policy, build_scorer
    from voiceid.verify.versions import decision_versions

    url = fresh_postgres()

    def db_upgrade(*args: str, backend: str | None = None) -> dict:
        monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("VOICEID_DATABASE_URL", url)
        monkeypatch.setenv("VOICEID_ENCRYPTION_KEY", key)
        monkeypatch.setenv("VOICEID_SESSION_SECRET", SESSION_SECRET)
        monkeypatch.setenv("VOICEID_KEYSTORE_URL", f"sqlite:///{tmp_path / 'keystore.db'}")
        if backend is None:
            monkeypatch.delenv("VOICEID_INFERENCE_BACKEND", raising=False)
        else:
            monkeypatch.setenv("VOICEID_INFERENCE_BACKEND", backend)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["db", "upgrade", *args])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output)["pinned"])

    def held_by(backend: InferenceBackend) -> dict[str, str]:
        """What a replica running `backend` holds (as Replica.start computes it)."""
        scorer = build_scorer(settings, backend_model_version(settings.model_dir, backend))
        return decision_versions(scorer, build_policy(settings, scorer))

    key = generate_key_text()
    default = concrete_backend(InferenceBackend.AUTO)
    db = Database(url)
    try:
        # An operator who first ran the upgrade with fp32 torch pinned its data ...
        assert db_upgrade(backend="torch") == held_by(InferenceBackend.TORCH)
        # ... and --repin on the defaults pins the default backend's, which the replicas then accept.
        assert db_upgrade("--repin") == held_by(default)
        assert check_decision_data(db, held_by(default), strict=True) == held_by(default)
        if default is not InferenceBackend.TORCH:
            with pytest.raises(VoiceIdError):
                check_decision_data(db, held_by(InferenceBackend.TORCH), strict=True)
    finally:
        db.dispose()

    # A fresh database upgraded on the defaults pins the default backend's data at once.
    url = fresh_postgres()
    db = Database(url)
    try:
        assert db_upgrade() == held_by(default)
        assert check_decision_data(db, held_by(default), strict=True) == held_by(default)
    finally:
        db.dispose()
