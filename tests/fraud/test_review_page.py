"""The /review page without a browser: sign-in, roles, CSRF, pages and the CSV export."""

from __future__ import annotations

import re

from tests.fraud.test_watchlist import VICTIM, near
from voiceid.testkit.engines import ScriptedEngine, unit


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


def test_a_bad_filter_shows_the_error_and_no_unfiltered_data(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller", VICTIM)
    call = api.verify("caller", engine.register(b"a", near(VICTIM, 0.8, 70)))
    assert sign_in(api).status_code == 303
    for params in ({"min_score": "abc"}, {"since": "yesterday"}, {"decision": "MAYBE"}):
        r = api.client.get("/review", params=params)
        assert r.status_code == 422 and "Invalid filter" in r.text, params
        assert call["verification_id"] not in r.text and "<svg" not in r.text and 'id="attempts"' not in r.text
        assert "Export CSV" not in r.text
    bad_cursor = api.client.get("/review", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 422 and call["verification_id"] not in bad_cursor.text


def test_flagging_twice_from_the_page_says_nothing_changed(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller", VICTIM)
    call = api.verify("caller", engine.register(b"r", unit(71)))
    assert sign_in(api).status_code == 303
    url = f"/review/attempts/{call['verification_id']}"
    token = csrf_of(api.client.get(url).text)
    first = api.client.post(f"{url}/flag", data={"csrf": token, "label": "ring"}, follow_redirects=False)
    assert first.status_code == 303
    again = api.client.post(f"{url}/flag", data={"csrf": token, "label": "ring"}, follow_redirects=False)
    assert again.status_code == 200 and "already part of the watchlist voice" in again.text
    assert len(api.client.get("/v1/watchlist", headers=api.h("analyst")).json()) == 1


def test_attempt_page_is_a_readable_table(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller", VICTIM)
    call = api.verify("caller", engine.register(b"a", near(VICTIM, 0.8, 72)))
    assert sign_in(api).status_code == 303
    page = api.client.get(f"/review/attempts/{call['verification_id']}").text
    # Rounded figures with their scale named; quality as rows; reasons in words.
    assert re.search(r'id="score">\d+\.\d{2}<', page) and re.search(
        r'id="thresholds">accept at \d+\.\d{2} or above', page
    )
    assert "raw cosine" in page and "Log-likelihood ratio" in page
    assert '<th scope="row">Net speech</th><td>6.0 s</td>' in page
    assert '<th scope="row">Signal-to-noise ratio</th><td>30.0 dB</td>' in page
    assert "the voice matches the voiceprint" in page
    assert "{&#34;" not in page and '{"' not in page  # no raw JSON dict
    assert "Linked calls" in page


def test_destructive_actions_need_a_confirmation_page(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine)
    api.seed_voiceprint("caller", VICTIM)
    call = api.verify("caller", engine.register(b"r", unit(73)))
    entry = api.client.post(
        "/v1/watchlist", json={"verification_id": call["verification_id"], "label": "ring"}, headers=api.h("analyst")
    ).json()
    assert sign_in(api).status_code == 303
    listing = api.client.get("/review/watchlist").text
    token = csrf_of(api.client.get("/review/attempts/" + call["verification_id"]).text)
    assert f'href="/review/watchlist/{entry["entry_id"]}/delete"' in listing  # a link to a page, not a button
    # A POST without the confirmation goes to the confirmation page and removes nothing.
    r = api.client.post(f"/review/watchlist/{entry['entry_id']}/delete", data={"csrf": token}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, f"/review/watchlist/{entry['entry_id']}/delete")
    assert len(api.client.get("/v1/watchlist", headers=api.h("analyst")).json()) == 1
    confirm = api.client.get(f"/review/watchlist/{entry['entry_id']}/delete")
    assert "This cannot be undone" in confirm.text and 'name="confirm" value="yes"' in confirm.text
    r = api.client.post(
        f"/review/watchlist/{entry['entry_id']}/delete", data={"csrf": token, "confirm": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303 and api.client.get("/v1/watchlist", headers=api.h("analyst")).json() == []


def test_reject_in_the_queue_needs_confirmation(make_api):
    from tests.fraud.conftest import llr_at
    from tests.fraud.test_watchlist import enrol

    engine = ScriptedEngine()
    api = make_api(engine=engine, duplicate_llr_threshold=llr_at(0.6))
    api.seed_voiceprint("alice", VICTIM)
    enrol(api, "alice-2", engine.register(b"dup", near(VICTIM, 0.9, 74)))
    [item] = api.client.get("/v1/review-queue", headers=api.h("analyst")).json()
    assert sign_in(api).status_code == 303
    queue = api.client.get("/review/queue").text
    assert "Same voice enrolled under another identity" in queue
    token = csrf_of(queue)
    url = f"/review/queue/{item['item_id']}/resolve"
    r = api.client.post(url, data={"csrf": token, "action": "reject"}, follow_redirects=False)
    assert r.headers["location"] == f"/review/queue/{item['item_id']}/reject"
    assert api.client.get("/v1/review-queue", headers=api.h("analyst")).json()[0]["status"] == "OPEN"
    assert "erased" in api.client.get(f"/review/queue/{item['item_id']}/reject").text
    r = api.client.post(url, data={"csrf": token, "action": "reject", "confirm": "yes"}, follow_redirects=False)
    assert r.status_code == 303
    assert (
        api.client.get("/v1/review-queue?status=REJECTED", headers=api.h("analyst")).json()[0]["item_id"]
        == (item["item_id"])
    )
