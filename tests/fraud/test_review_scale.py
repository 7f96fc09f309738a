"""Issue 21: the review desk shows every score on the scale its thresholds are on (the calibrated
LLR, or the cosine where thresholds are pinned on it), with the normalised score beside it, filters
on that scale, and answers a bad filter in words; the API's score log parses its filters with the
same parser. The browser test reads the scale off the rendered page in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fraud.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.fraud.test_review_page import sign_in
from tests.fraud.test_watchlist import VICTIM, near
from voiceid.api.app import create_app
from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.root import VoiceIdService
from voiceid.services.score_log import parse_filter
from voiceid.services.views import Role
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.engines import ScriptedEngine
from voiceid.testkit.servers import serve_in_thread

# Cosines of scripted calls against the voiceprint: accepted, accepted, rejected on the LLR scale.
# Under this calibration the rejected call's normalised score (about 1.2) lies *above* the reject
# threshold (about -1.1): the figure the old Score column showed beside it.
COSINES = (0.9, 0.6, 0.1)
AUDIO = "audio/basic"  # scripted phone audio: the phone calibration
ROW = re.compile(
    r'<tr class="decision-(?P<decision>\w+)">.*?<td class="score" data-scale="(?P<scale>\w*)">'
    r'<span class="value">(?P<score>-?\d+\.\d+)</span>\s*<small class="scale">(?P<label>[^:<]+): '
    r'reject &lt; <span class="reject">(?P<reject>-?\d+\.\d+)</span>, '
    r'accept ≥ <span class="accept">(?P<accept>-?\d+\.\d+)</span></small></td>\s*'
    r'<td class="normalised">(?P<normalised>-?\d+\.\d+)</td>',
    re.S,
)


def _llr_desk(make_api, calibration: Path):
    engine = ScriptedEngine()
    api = make_api(
        engine=engine, pin_thresholds=False, score_norm="as-norm", cohort_size=1000, calibration_file=calibration
    )
    api.seed_voiceprint("caller", VICTIM)
    calls = [
        api.verify("caller", engine.register(f"call-{i}".encode(), near(VICTIM, c, 90 + i)), "audio/basic")
        for i, c in enumerate(COSINES)
    ]
    return api, calls


def _rows(html: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in ROW.finditer(html)]


def _on_the_right_side(row: dict[str, str]) -> bool:
    score, reject, accept = float(row["score"]), float(row["reject"]), float(row["accept"])
    if row["decision"] == "accept":
        return score >= accept
    if row["decision"] == "reject":
        return score < reject
    return reject <= score < accept


def test_the_score_column_is_the_llr_beside_its_thresholds(make_api, asnorm_from_the_first_caller) -> None:
    api, calls = _llr_desk(make_api, asnorm_from_the_first_caller)
    assert [c["threshold_scale"] for c in calls] == ["llr"] * 3
    rejected = calls[-1]
    assert rejected["decision"] == "REJECT" and rejected["score"] > rejected["reject_threshold"]  # the old confusion
    assert sign_in(api).status_code == 303
    rows = _rows(api.client.get("/review").text)
    assert len(rows) == 3
    by_decision = {r["decision"]: r for r in rows}
    for row, call in zip(rows, reversed(calls), strict=True):  # newest first
        assert (row["score"], row["normalised"]) == (f"{call['llr']:.2f}", f"{call['score']:.2f}")
        assert row["scale"] == "llr" and row["label"] == "calibrated LLR"
        assert _on_the_right_side(row), row
    assert float(by_decision["reject"]["score"]) < float(by_decision["reject"]["reject"])

    # The detail page: the LLR as the score, the normalised score as a secondary row.
    detail = unescape(api.client.get(f"/review/attempts/{rejected['verification_id']}").text)
    assert re.search(rf'id="score">{rejected["llr"]:.2f}<', detail)
    assert re.search(rf'id="normalised-score">{rejected["score"]:.2f}<', detail)
    assert "calibrated LLR, the scale the thresholds are on" in detail

    # The filter is on the same scale: between the thresholds and above, not the normalised score.
    reject_at = rejected["reject_threshold"]
    above = _rows(api.client.get("/review", params={"min_decided": f"{reject_at}"}).text)
    assert {r["decision"] for r in above} == {"accept"}
    below = _rows(api.client.get("/review", params={"max_decided": f"{reject_at}"}).text)
    assert [r["decision"] for r in below] == ["reject"]
    # The API filters on it too (min_decided), and its min_score is still the normalised score.
    log = api.client.get("/v1/verifications", params={"max_decided": reject_at}, headers=api.h("analyst")).json()
    assert [v["verification_id"] for v in log["items"]] == [rejected["verification_id"]]
    log = api.client.get("/v1/verifications", params={"max_score": reject_at}, headers=api.h("analyst")).json()
    assert log["items"] == []  # no normalised score is that low
    # The desk's export carries the value the page shows, and its scale.
    export = api.client.get("/review/export.csv", params={"decision": "REJECT"}).text.splitlines()
    header, line = export[0].split(","), export[1].split(",")
    assert float(line[header.index("decided_score")]) == pytest.approx(rejected["llr"])
    assert line[header.index("threshold_scale")] == "llr"


def test_rows_decided_on_pinned_cosine_thresholds_show_the_cosine(make_api) -> None:
    engine = ScriptedEngine()
    api = make_api(engine=engine)  # thresholds pinned at cosine 0.45 / 0.30
    api.seed_voiceprint("caller", VICTIM)
    for i, c in enumerate((0.8, 0.35, 0.1)):
        api.verify("caller", engine.register(f"c{i}".encode(), near(VICTIM, c, 95 + i)))
    assert sign_in(api).status_code == 303
    rows = _rows(api.client.get("/review").text)
    assert [r["decision"] for r in rows] == ["reject", "inconclusive", "accept"]
    for row in rows:
        assert row["scale"] == "cosine" and row["label"] == "raw cosine" and row["score"] == row["normalised"]
        assert (float(row["accept"]), float(row["reject"])) == (0.45, 0.30)
        assert _on_the_right_side(row), row


def test_filter_errors_are_answered_in_words_on_the_page_and_the_api(make_api) -> None:
    api = make_api()
    assert sign_in(api).status_code == 303
    page = unescape(api.client.get("/review", params={"min_decided": "abc", "since": "yesterday"}).text)
    assert "Invalid filter: \u201cFrom\u201d must be a date such as 2025-01-31" in page
    assert "\u201cScore \u2265\u201d must be a number such as 1.5 or -2 (got \u201cabc\u201d)" in page
    for python_words in ("could not convert", "Invalid isoformat", "is not a valid", "Input should be"):
        assert python_words not in page
    r = api.client.get("/v1/verifications", params={"decision": "MAYBE"}, headers=api.h("analyst"))
    assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"
    assert r.json()["message"].startswith("Invalid filter: \u201cdecision\u201d must be one of ACCEPT, ")
    csv = api.client.get("/v1/verifications.csv", params={"cm_flagged": "maybe"}, headers=api.h("analyst"))
    assert csv.status_code == 422 and "\u201ccm_flagged\u201d must be true or false" in csv.json()["message"]


def test_one_parser_for_both_edges() -> None:
    f = parse_filter({"until": "2025-01-31", "since": "2025-01-01T09:30:00", "cm": "flagged", "decision": " REJECT "})
    assert f.until == datetime(2025, 2, 1, tzinfo=UTC)  # a bare date includes that day
    assert f.since == datetime(2025, 1, 1, 9, 30, tzinfo=UTC)  # no zone: UTC
    assert f.cm_flagged is True and f.decision == "REJECT"
    assert parse_filter({"cm_flagged": "False"}).cm_flagged is False
    assert parse_filter({"until": "2025-01-31T10:00:00+01:00"}).until == datetime(2025, 1, 31, 9, tzinfo=UTC)
    assert parse_filter({"min_decided": "-2.5", "speaker_id": ""}) == repo.VerificationFilter(min_decided=-2.5)
    for bad in ({"min_score": "nan"}, {"max_decided": "inf"}, {"until": "9999-12-31"}, {"reason": "%"}):
        with pytest.raises(VoiceIdError) as raised:
            parse_filter(bad)
        assert raised.value.code is ErrorCode.INVALID_REQUEST and raised.value.message.startswith("Invalid filter: ")
    with pytest.raises(VoiceIdError, match="disagree"):
        parse_filter({"cm": "flagged", "cm_flagged": "false"})


@pytest.fixture
def llr_desk(
    settings: Settings,
    tmp_path: Path,
    asnorm_from_the_first_caller: Path,
) -> Iterator[tuple[str, VoiceIdService, ScriptedEngine]]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (scripts/ensure-services.sh installs Debian's chromium)")
    engine = ScriptedEngine()
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "database_url": None,
            "admin_key": SecretStr("admin-scale-browser-key-3kPq9ZcVw8LmT2xYbN5rJhG7fD4sA1eU"),
            "encryption_key": SecretStr(generate_key_text()),
            "score_norm": "as-norm",
            "cohort_size": 1000,
            "calibration_file": asnorm_from_the_first_caller,
            "enrol_phone_view": False,
        }
    )
    app = create_app(app_settings, engine=engine)  # type: ignore[arg-type]
    with serve_in_thread(app) as url:
        yield url, app.state.service, engine


@pytest.mark.browser
def test_in_the_browser_each_score_sits_on_the_right_side_of_its_shown_threshold(llr_desk) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, service, engine = llr_desk
    service.speakers.put("caller", True, "v1", "phone")
    with service.db.transaction() as session:
        speaker = repo.get_speaker(session, "caller")
        assert speaker is not None
        repo.set_voiceprint(session, service.cipher, speaker, VICTIM, str(engine.model_version))
        speaker.status = "ENROLLED"
    calls = [
        service.verifications.verify(
            "caller", engine.register(f"b{i}".encode(), near(VICTIM, c, 99 + i)), "audio/basic"
        )
        for i, c in enumerate(COSINES)
    ]
    rejected = calls[-1]
    assert rejected.decision == "REJECT" and rejected.threshold_scale == "llr"
    _, analyst_key = service.keys.create(Role.ANALYST, "scale browser test")
    out = Path(__file__).resolve().parents[2] / "test-output" / "review-scale"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/review/login")
            page.fill("#api_key", analyst_key)
            page.click("button:has-text('Sign in')")
            rows = page.locator("#attempts tbody tr")
            expect(rows).to_have_count(3)
            page.screenshot(path=str(out / "1-attempts.png"), full_page=True)
            for i in range(3):
                row = rows.nth(i)
                decision = (row.get_attribute("class") or "").removeprefix("decision-")
                cell = row.locator("td.score")
                shown = float(cell.locator(".value").inner_text())
                reject = float(cell.locator(".reject").inner_text())
                accept = float(cell.locator(".accept").inner_text())
                assert "calibrated LLR" in cell.inner_text()
                assert {"accept": shown >= accept, "reject": shown < reject}.get(decision, True), (decision, shown)
                if decision == "reject":
                    assert cell.locator(".value").inner_text() == f"{rejected.llr:.2f}"
                    # The normalised score stands beside it, and alone it would sit on the wrong side.
                    assert float(row.locator("td.normalised").inner_text()) >= reject

            # Filtering by "Score ≤" the reject threshold (LLR) leaves the rejected call alone.
            page.fill("input[name=max_decided]", f"{rejected.reject_threshold}")
            page.click("#filters button[type=submit]")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("REJECT")
            page.click("#attempts a:has-text('Open')")
            shown = float(page.locator("#score").inner_text())
            thresholds = page.locator("#thresholds").inner_text()
            match = re.search(r"reject below (-?\d+\.\d+)", thresholds)
            assert match and shown < float(match.group(1)), (shown, thresholds)
            expect(page.locator("#score-scale")).to_contain_text("calibrated LLR")
            page.screenshot(path=str(out / "2-rejected-attempt.png"), full_page=True)

            # A bad filter is answered in words on the page.
            page.goto(f"{base}/review")
            page.fill("input[name=min_decided]", "abc")
            page.click("#filters button[type=submit]")
            expect(page.locator("p.error")).to_contain_text("must be a number such as 1.5 or -2")
            expect(page.locator("#attempts")).to_have_count(0)
        finally:
            browser.close()
