"""Health, readiness, metrics, OpenAPI and the error body for routing errors."""

from __future__ import annotations

from voiceid.testkit.engines import ScriptedEngine, unit


def test_healthz_readyz_docs(make_api):
    api = make_api()
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    body = ready.json()
    assert ready.status_code == 200 and (body["status"], body["model"], body["database"]) == ("ready", True, True)
    # What a replica decides with: the database revision its caches hold, the data's content hashes.
    assert set(body["revision"]) == {"voiceprints", "watchlist"}
    assert set(body["decision_data"]) == {"cohort", "calibration"}
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/v1/speakers/{speaker_id}/verifications" in paths and "/v1/verifications.csv" in paths


def test_readyz_is_503_when_the_database_is_unreachable(make_api, monkeypatch):
    api = make_api()
    monkeypatch.setattr(api.service.db, "ping", lambda: False)
    r = api.client.get("/readyz")
    assert r.status_code == 503 and r.json()["database"] is False


def test_metrics_count_requests_and_decisions(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller-1", unit(1))
    api.verify("caller-1", engine.register(b"p", unit(1)))
    text = api.client.get("/metrics", headers=api.h("admin")).text
    assert 'voiceid_decisions_total{decision="ACCEPT"} 1.0' in text
    assert 'route="/v1/speakers/{speaker_id}/verifications",status="200"' in text
    assert "caller-1" not in text
    assert "voiceid_inference_seconds_count 1.0" in text


def test_unknown_route_and_method_are_json_errors(make_api):
    api = make_api()
    r = api.client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = api.client.patch("/v1/speakers/x", headers=api.h("admin"))
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
