"""The /review page without a browser: sign-in, roles, CSRF, pages and the CSV export."""

from __future__ import annotations

import re

from tests.api.conftest import ScriptedEngine, unit
from tests.fraud.test_watchlist import VICTIM, near


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(api, role: str = "analyst"):
    page = api.client.get("/review/login")
    return api.client.post(
        "/review/login", data={"csrf": csrf_of(page.text), "api_key": api.keys[role]}, follow_redirects=False
    )


def test_pages_need_an_analyst_sign_in(make_api):
    api = make_api()
    r = api.client.get("/review", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/review/login")
    for role in ("ivr", "enrolment"):
        assert sign_in(api, role).status_code == 401
        assert api.client.get("/review", follow_redirects=False).status_code == 303
    page = api.client.get("/review/login")
    forged = api.client.post("/review/login", data={"csrf": "forged", "api_key": api.keys["analyst"]})
    assert forged.status_code == 403 and page.status_code == 200
    r = sign_in(api)
    assert (r.status_code, r.headers["location"]) == (303, "/review")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert api.client.get("/review").status_code == 200
    # A tampered cookie is no session.
    tampered = "x" + api.client.cookies["voiceid_review"]
    api.client.cookies.clear()
    api.client.cookies.set("voiceid_review", tampered)
    assert api.client.get("/review", follow_redirects=False).status_code == 303


def test_flag_from_the_page_needs_the_session_csrf_token(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller", VICTIM)
    accepted = api.verify("caller", engine.register(b"a", near(VICTIM, 0.8, 60)))
    rejected = api.verify("caller", engine.register(b"r", unit(61)))
    assert sign_in(api).status_code == 303
    listing = api.client.get("/review", params={"decision": "REJECT"})
    assert rejected["verification_id"] in listing.text and accepted["verification_id"] not in listing.text
    assert "<svg" in listing.text and "REJECT (1)" in listing.text
    by_reason = api.client.get("/review", params={"reason": "SCORE_BELOW_REJECT_THRESHOLD"})
    assert rejected["verification_id"] in by_reason.text and accepted["verification_id"] not in by_reason.text
    assert "Invalid filter" in api.client.get("/review", params={"reason": "NOT_A_REASON"}).text
    detail = api.client.get(f"/review/attempts/{rejected['verification_id']}")
    assert detail.status_code == 200 and "Flag as fraud" in detail.text
    url = f"/review/attempts/{rejected['verification_id']}/flag"
    assert api.client.post(url, data={"csrf": "wrong", "label": "ring-B"}).status_code == 403
    r = api.client.post(url, data={"csrf": csrf_of(detail.text), "label": "ring-B"}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/review/watchlist")
    watchlist = api.client.get("/review/watchlist")
    assert "ring-B" in watchlist.text
    entries = api.client.get("/v1/watchlist", headers=api.h("analyst")).json()
    assert [(e["label"], e["verification_id"]) for e in entries] == [("ring-B", rejected["verification_id"])]
    csv_text = api.client.get("/review/export.csv", params={"decision": "ACCEPT"}).text
    assert accepted["verification_id"] in csv_text and rejected["verification_id"] not in csv_text
    queue = api.client.get("/review/queue")
    assert queue.status_code == 200 and "Nothing to review" in queue.text
