"""Issue 10 point 7, the review desk as attacked: a cookie replayed after sign-out, an absurd date
filter, formula injection through the CSV export, and a page without browser hardening headers."""

from __future__ import annotations

import csv
import io

from tests.fraud.test_review_page import csrf_of, sign_in
from voiceid.fraud.export import FORMULA_PREFIXES, safe_cell, safe_row
from voiceid.testkit.engines import ScriptedEngine, unit


def test_session_cookie_is_dead_after_logout(make_api):
    api = make_api()
    assert sign_in(api).status_code == 303
    stolen = api.client.cookies.get("voiceid_review")
    page = api.client.get("/review")
    assert page.status_code == 200
    r = api.client.post("/review/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    # The attacker replays the copied cookie: its signature is still valid, the session is not.
    api.client.cookies.set("voiceid_review", stolen, path="/review")
    replay = api.client.get("/review", follow_redirects=False)
    assert (replay.status_code, replay.headers["location"]) == (303, "/review/login")
    assert api.client.get("/review/export.csv", follow_redirects=False).status_code == 303


def test_session_ends_when_its_key_is_deleted(make_api, db):
    from sqlalchemy import delete

    from voiceid.storage import models as m

    api = make_api()
    sign_in(api)
    assert api.client.get("/review").status_code == 200
    with db.transaction() as session:
        session.execute(delete(m.ApiKey).where(m.ApiKey.role == "analyst"))
    assert api.client.get("/review", follow_redirects=False).status_code == 303


def test_far_future_until_is_a_4xx_not_a_500(make_api):
    api = make_api()
    sign_in(api)
    for path in ("/review", "/review/export.csv"):
        r = api.client.get(path, params={"until": "9999-12-31"})
        assert r.status_code == 422, (path, r.status_code)
        assert "Invalid filter" in r.text
    r = api.client.get("/v1/verifications", params={"until": "9999-12-31T23:59:59"}, headers=api.h("analyst"))
    assert r.status_code < 500


def test_csv_export_neutralises_formulas(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    # "-1-1" is a valid speaker id (A-Z a-z 0-9 . _ : -) and a formula to a spreadsheet.
    api.seed_voiceprint("-1-1", unit(1))
    api.verify("-1-1", engine.register(b"p", unit(2)))
    sign_in(api)
    rows = list(csv.reader(io.StringIO(api.client.get("/review/export.csv").text)))
    assert rows[1][2] == "'-1-1"
    score = float(rows[1][4])  # numbers stay numbers, negative or not
    assert -1.0 <= score <= 1.0


def test_every_formula_prefix_is_neutralised():
    for prefix in FORMULA_PREFIXES:
        assert safe_cell(prefix + 'HYPERLINK("http://x/")') == "'" + prefix + 'HYPERLINK("http://x/")'
    assert safe_row(["ok", -0.25, 3, None]) == ["ok", -0.25, 3, None]


def test_review_pages_send_browser_hardening_headers(make_api):
    api = make_api()
    for path in ("/review/login", "/review/static/review.css"):
        headers = api.client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none' forbids script
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    sign_in(api)
    assert api.client.get("/review").headers["x-frame-options"] == "DENY"
    assert api.client.get("/healthz").headers["x-content-type-options"] == "nosniff"
