"""Hostile traffic, round two (issue 20): call bindings private to their key, review sessions that
end with their key, and the HTTP body guard."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.fraud.test_review_page import sign_in
from voiceid.services.views import Role


def test_a_call_binding_is_readable_only_by_its_key_or_admin(make_api) -> None:
    api = make_api()
    api.put_speaker("victim")
    other_ivr = api.service.keys.create(Role.IVR)[1]
    call = uuid.uuid4()
    assert api.client.put(f"/v1/calls/{call}", json={"speaker_id": "victim"}, headers=api.h("ivr")).status_code == 201
    assert api.client.get(f"/v1/calls/{call}", headers=api.h("ivr")).status_code == 200
    assert api.client.get(f"/v1/calls/{call}", headers=api.h("admin")).status_code == 200
    for secret in (other_ivr, api.keys["enrolment"]):
        r = api.client.get(f"/v1/calls/{call}", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
        assert "victim" not in r.text


def test_a_review_session_ends_when_its_key_is_revoked(make_api) -> None:
    api = make_api()
    assert sign_in(api).status_code == 303
    assert api.client.get("/review", follow_redirects=False).status_code == 200
    key_id = api.service.keys.authenticate(api.keys["analyst"])[0]  # type: ignore[index]
    assert api.client.delete(f"/v1/api-keys/{key_id}", headers=api.h("admin")).status_code == 204
    r = api.client.get("/review", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/review/login")


def test_a_review_session_ends_when_its_key_expires(make_api) -> None:
    api = make_api()
    now = [api.service.clock()]
    _key_id, secret = api.service.keys.create(Role.ANALYST, None, now[0] + timedelta(minutes=5))
    browser = TestClient(api.client.app)
    page = browser.get("/review/login")
    from tests.fraud.test_review_page import csrf_of

    r = browser.post("/review/login", data={"csrf": csrf_of(page.text), "api_key": secret}, follow_redirects=False)
    assert r.status_code == 303 and browser.get("/review", follow_redirects=False).status_code == 200
    api.service.clock = lambda: now[0] + timedelta(minutes=6)  # type: ignore[method-assign]
    assert browser.get("/review", follow_redirects=False).status_code == 303
