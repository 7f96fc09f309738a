"""The review page in headless Chromium: sign in, filter, open an attempt, flag it, see it on the
watchlist. Real app under uvicorn, real model, real dev speech; screenshots go to test-output/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fraud.conftest import llr_at
from voiceid.api.app import create_app
from voiceid.config import Settings
from voiceid.engine import Engine
from voiceid.fraud.scale import Channel
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.testkit.servers import serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.devdata]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "review-browser"


@pytest.fixture
def live_app(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[tuple[str, VoiceIdService]]:
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "database_url": None,
            "admin_key": SecretStr("admin-browser-test-key-qBR8VYPQjR4N9nfQhg5JftWRvU0DneNS"),
            "enrol_min_speech_s": 8.0,
            # Low (cosine 0.5 on the wideband scale): the last check wants the impostor's next call,
            # a different clean recording of the same speaker, screened out.
            "watchlist_llr_threshold": llr_at(0.5, Channel.WIDEBAND),
            "watchlist_action": "reject",
        }
    )
    app = create_app(app_settings, engine=engine)
    with serve_in_thread(app) as url:
        yield url, app.state.service


def test_sign_in_filter_open_flag_and_see_watchlist(live_app, dev_files):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (scripts/ensure-services.sh installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    base, service = live_app
    # Two real dev speakers: one enrols; the other then calls claiming to be them (an impostor).
    speakers = sorted(dev_files)
    owner, impostor = dev_files[speakers[0]], dev_files[speakers[1]]
    service.speakers.put("customer-a", True, "v1", "phone")
    for path in owner[:4]:
        if service.enrolment.add_audio("customer-a", path.read_bytes(), None).status == "ENROLLED":
            break
    genuine = service.verifications.verify("customer-a", owner[-1].read_bytes(), None)
    attack = service.verifications.verify("customer-a", impostor[-1].read_bytes(), None)
    assert genuine.decision in ("ACCEPT", "INCONCLUSIVE") and attack.decision == "REJECT", (genuine, attack)
    _, analyst_key = service.keys.create(Role.ANALYST, "browser test")

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/review")
            expect(page).to_have_url(f"{base}/review/login")
            page.fill("#api_key", analyst_key)
            page.click("button:has-text('Sign in')")
            expect(page.locator("h1")).to_have_text("Verification attempts")
            expect(page.locator("#attempts tbody tr")).to_have_count(2)

            page.fill("input[name=speaker_id]", "customer-a")
            page.select_option("select[name=decision]", "REJECT")
            page.click("#filters button[type=submit]")
            rows = page.locator("#attempts tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("REJECT")
            expect(page.locator("svg.histogram")).to_be_visible()
            page.screenshot(path=str(OUTPUT_DIR / "1-attempts-filtered.png"), full_page=True)

            rows.first.locator("a:has-text('Open')").click()
            expect(page.locator("h1")).to_contain_text(attack.verification_id)
            expect(page.locator("#decision")).to_have_text("REJECT")
            page.fill("#label", "impostor ring B")
            page.fill("#note", "claimed to be customer-a")
            page.screenshot(path=str(OUTPUT_DIR / "2-attempt-detail.png"), full_page=True)
            page.click("#flag-form button[type=submit]")

            expect(page).to_have_url(f"{base}/review/watchlist")
            expect(page.locator("#watchlist tbody tr")).to_have_count(1)
            expect(page.locator("#watchlist td.label")).to_have_text("impostor ring B")
            page.screenshot(path=str(OUTPUT_DIR / "3-watchlist.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots in {OUTPUT_DIR}")

    # The flag is live: the impostor's next call is screened out, the owner's still accepted.
    again = service.verifications.verify("customer-a", impostor[-2].read_bytes(), None)
    assert "WATCHLIST_MATCH" in again.reasons and again.decision == "REJECT"
    assert "WATCHLIST_MATCH" not in service.verifications.verify("customer-a", owner[-2].read_bytes(), None).reasons
