"""The audit trail: administrative and analyst actions are recorded with who did them, readable by
admin only, and `voiceid audit verify` finds a row edited with raw SQL and a row deleted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from voiceid.cli import app
from voiceid.config import get_settings
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.storage.crypto import generate_key_text
from voiceid.storage.db import Database
from voiceid.testkit.api import SESSION_SECRET
from voiceid.testkit.engines import ScriptedEngine, unit
from voiceid.testkit.postgres import POSTGRES_ADMIN_DSN


def test_actions_are_recorded_with_their_actor(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0)
    name = f"audited-{uuid.uuid4().hex[:8]}"
    api.seed_voiceprint(name, unit(7))
    api.verify(name, engine.register(b"audited-probe", unit(7)), "audio/basic")
    vid = api.client.get("/v1/verifications", headers=api.h("analyst")).json()["items"][0]["verification_id"]
    entry = api.client.post(
        "/v1/watchlist", json={"verification_id": vid, "label": "mule"}, headers=api.h("analyst")
    ).json()["entry_id"]
    assert api.client.delete(f"/v1/watchlist/{entry}", headers=api.h("analyst")).status_code == 204
    assert api.client.post(f"/v1/speakers/{name}/unlock", headers=api.h("admin")).status_code == 200
    assert api.client.get("/v1/verifications.csv", headers=api.h("analyst")).status_code == 200
    assert api.client.delete(f"/v1/speakers/{name}", headers=api.h("enrolment")).status_code == 204
    ivr_id = next(
        k["key_id"] for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json() if k["role"] == "ivr"
    )
    assert api.client.delete(f"/v1/api-keys/{ivr_id}", headers=api.h("admin")).status_code == 204

    assert api.client.get("/v1/audit", headers=api.h("analyst")).status_code == 403
    page = api.client.get("/v1/audit?limit=7", headers=api.h("admin")).json()
    got = [(e["action"], e["target"]) for e in reversed(page["items"])]
    keys = {k["role"]: k["key_id"] for k in api.client.get("/v1/api-keys", headers=api.h("admin")).json()}
    assert got == [
        ("API_KEY_CREATED", keys["analyst"]),
        ("WATCHLIST_ADDED", entry),
        ("WATCHLIST_DELETED", entry),
        ("SPEAKER_UNLOCKED", name),
        ("SCORE_LOG_EXPORTED", "verifications.csv"),
        ("SPEAKER_DELETED", name),
        ("API_KEY_REVOKED", ivr_id),
    ]
    actors = {e["action"]: e["actor"] for e in page["items"]}
    assert actors["WATCHLIST_ADDED"] == f"key:{keys['analyst']}"
    assert actors["SPEAKER_UNLOCKED"] == actors["API_KEY_REVOKED"] == f"key:{keys['admin']}"
    assert actors["SPEAKER_DELETED"] == f"key:{keys['enrolment']}"
    # Chained: each row names the previous row's hash.
    items = page["items"]
    assert all(items[i]["prev_hash"] == items[i + 1]["hash"] for i in range(len(items) - 1))
    older = api.client.get(f"/v1/audit?limit=2&before={items[-1]['seq']}", headers=api.h("admin")).json()
    assert [e["seq"] for e in older["items"]] == [items[-1]["seq"] - 1, items[-1]["seq"] - 2]
    only = api.client.get("/v1/audit?action=SPEAKER_DELETED", headers=api.h("admin")).json()["items"]
    assert only and {e["action"] for e in only} == {"SPEAKER_DELETED"}
    assert api.client.get("/v1/audit?action=DROP_TABLE", headers=api.h("admin")).status_code == 422


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own_db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database of this test's own: it is tampered with."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"voiceid_audit_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{admin.info.user}@{admin.info.host}:{admin.info.port}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run_verify(monkeypatch, tmp_path, url: str, *args: str) -> tuple[int, dict]:
    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEID_DATABASE_URL", url)
    # Shared configuration, as every process of a PostgreSQL deployment must have it.
    monkeypatch.setenv("VOICEID_ENCRYPTION_KEY", generate_key_text())
    monkeypatch.setenv("VOICEID_SESSION_SECRET", SESSION_SECRET)
    monkeypatch.setenv("VOICEID_KEYSTORE_URL", f"sqlite:///{tmp_path / 'keystore.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["audit", "verify", *args])
    finally:
        get_settings.cache_clear()
    return result.exit_code, json.loads(result.output)


def test_audit_verify_finds_an_edited_and_a_deleted_row(own_db_url, monkeypatch, tmp_path):
    db = Database(own_db_url)
    db.migrate()
    with audit.acting_as("key:admin1"):
        for i in range(6):
            with db.transaction() as session:
                audit.append(session, AuditAction.SPEAKER_DELETED, f"caller-{i}", {"n": i}, datetime.now(UTC))
    code, ok = run_verify(monkeypatch, tmp_path, own_db_url)
    assert code == 0 and ok["ok"] and ok["rows"] == 6
    head = ok["head_hash"]

    with db.engine.begin() as conn:  # an insider hides who was deleted
        conn.execute(text("UPDATE audit_events SET target = 'someone-else' WHERE seq = 2"))
    code, out = run_verify(monkeypatch, tmp_path, own_db_url)
    assert code == 1 and [(p["seq"], p["kind"]) for p in out["problems"]] == [(2, "EDITED")]

    with db.engine.begin() as conn:  # ... then deletes a row outright
        conn.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    code, out = run_verify(monkeypatch, tmp_path, own_db_url)
    kinds = {(p["seq"], p["kind"]) for p in out["problems"]}
    assert code == 1 and {(2, "EDITED"), (4, "MISSING"), (5, "BROKEN_LINK")} <= kinds

    with db.engine.begin() as conn:  # ... and cuts the tail
        conn.execute(text("DELETE FROM audit_events WHERE seq = 6"))
    code, out = run_verify(monkeypatch, tmp_path, own_db_url)
    assert code == 1 and (6, "HEAD_MISMATCH") in {(p["seq"], p["kind"]) for p in out["problems"]}
    db.dispose()

    # A chain rewritten consistently, head included, is caught against the head kept elsewhere.
    fresh_dir = tmp_path / "fresh"
    fresh = Database(f"sqlite:///{fresh_dir / 'a.db'}")
    fresh.migrate()
    with fresh.transaction() as session:
        audit.append(session, AuditAction.SPEAKER_DELETED, "forged", {}, datetime.now(UTC))
    fresh.dispose()
    code, out = run_verify(monkeypatch, fresh_dir, f"sqlite:///{fresh_dir / 'a.db'}", "--expect-head", head)
    assert code == 1 and out["problems"][-1]["kind"] == "HEAD_CHANGED"


def test_concurrent_appends_keep_one_chain(own_db_url):
    import threading

    db = Database(own_db_url)
    db.migrate()

    def work(n: int) -> None:
        for i in range(10):
            with db.transaction() as session:
                audit.append(session, AuditAction.WATCHLIST_ADDED, f"{n}-{i}", {}, datetime.now(UTC))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.transaction() as session:
        verdict = audit.verify(session)
    assert verdict.ok and verdict.rows == 40
    db.dispose()


def test_audit_verify_reports_an_empty_chain_as_a_finding(own_db_url, monkeypatch, tmp_path):
    """Chain and head both emptied (or never written): a finding with exit 1, not a traceback."""
    db = Database(own_db_url)
    db.migrate()
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))
        conn.execute(text("DELETE FROM audit_head"))
    db.dispose()
    code, out = run_verify(monkeypatch, tmp_path, own_db_url)
    assert code == 1 and not out["ok"] and out["rows"] == 0
    assert [p["kind"] for p in out["problems"]] == ["EMPTY"]
