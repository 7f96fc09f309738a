"""The role matrix: every endpoint x every role, plus no key and a wrong key.

The app runs on an engine that fails the test if called: authentication and authorisation must
be settled before any audio is read, let alone inferred.
"""

from __future__ import annotations

import pytest

from voiceid.testkit.api import ROLES

CONSENT = {"consent": {"granted": True, "text_version": "v1", "channel": "phone"}}
AUDIO = {"content": b"", "headers": {"Content-Type": "audio/wav"}}

# (method, path, request kwargs, roles allowed besides admin)
ENDPOINTS = [
    ("POST", "/v1/api-keys", {"json": {"role": "ivr"}}, set()),
    ("PUT", "/v1/speakers/caller-1", {"json": CONSENT}, {"enrolment"}),
    ("GET", "/v1/speakers/caller-1", {}, {"enrolment"}),
    ("POST", "/v1/speakers/caller-1/enrolment-audio", AUDIO, {"enrolment"}),
    ("POST", "/v1/speakers/caller-1/enrolment/reset", {}, {"enrolment"}),
    ("POST", "/v1/speakers/caller-1/opt-out", {}, {"enrolment"}),
    ("DELETE", "/v1/speakers/caller-1", {}, {"enrolment"}),
    ("POST", "/v1/speakers/caller-1/unlock", {}, set()),
    ("POST", "/v1/speakers/caller-1/verifications", AUDIO, {"ivr"}),
    ("GET", "/v1/verifications", {}, {"analyst"}),
    ("GET", "/v1/verifications/0123456789abcdef", {}, {"analyst"}),
    ("GET", "/v1/verifications.csv", {}, {"analyst"}),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "allowed"), ENDPOINTS, ids=[f"{e[0]} {e[1]}" for e in ENDPOINTS])
def test_role_matrix(make_api, method, path, kwargs, allowed):
    api = make_api()
    got: dict[str, tuple[int, str]] = {}
    principals: dict[str, dict[str, str]] = {role: api.h(role) for role in ROLES}
    principals["no key"] = {}
    principals["wrong key"] = {"Authorization": "Bearer vid_not-a-key"}
    principals["not bearer"] = {"Authorization": f"Basic {api.keys['admin']}"}
    for who, auth in principals.items():
        headers = {**kwargs.get("headers", {}), **auth}
        r = api.client.request(method, path, headers=headers, **{k: v for k, v in kwargs.items() if k != "headers"})
        got[who] = (
            r.status_code,
            r.json().get("code", "") if r.headers["content-type"].startswith("application/json") else "",
        )
    expected: dict[str, object] = {}
    for who, (status, _code) in got.items():
        if who in ("no key", "wrong key", "not bearer"):
            expected[who] = (401, "UNAUTHENTICATED")
        elif who == "admin" or who in allowed:
            expected[who] = "neither 401 nor 403"
            if status not in (401, 403):
                got[who] = "neither 401 nor 403"  # type: ignore[assignment]
        else:
            expected[who] = (403, "FORBIDDEN")
    assert got == expected


def test_unauthenticated_response_shape(make_api):
    api = make_api()
    r = api.client.get("/v1/verifications")
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHENTICATED" and r.json()["message"]
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_forbidden_request_changes_nothing(make_api):
    api = make_api()
    api.put_speaker("caller-1")
    r = api.client.delete("/v1/speakers/caller-1", headers=api.h("ivr"))
    assert r.status_code == 403
    assert api.client.get("/v1/speakers/caller-1", headers=api.h("enrolment")).status_code == 200


def test_api_key_is_returned_once_and_stored_hashed(make_api, db):
    from sqlalchemy import select

    from voiceid.storage.models import ApiKey

    api = make_api()
    r = api.client.post("/v1/api-keys", json={"role": "analyst", "label": "fraud team"}, headers=api.h("admin"))
    assert r.status_code == 201
    body = r.json()
    assert body["role"] == "analyst" and body["key"].startswith("vid_")
    with db.transaction() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert all(body["key"] not in (k.key_hash, k.label) for k in stored)
    assert api.client.get("/v1/verifications", headers={"Authorization": f"Bearer {body['key']}"}).status_code == 200


def test_unknown_role_is_rejected(make_api):
    api = make_api()
    r = api.client.post("/v1/api-keys", json={"role": "root"}, headers=api.h("admin"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"
