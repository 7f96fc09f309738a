"""The fraud desk in headless Chromium, on scripted embeddings (fast, exact scores): the histogram
draws each threshold inside its plot and every bar holds the right count; the decisions-per-day
chart; the voice-cluster page of a fraudster calling as three customers; confirmation before a
watchlist voice is removed. Screenshots go to test-output/desk-browser/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from tests.fraud.conftest import llr_at
from tests.fraud.test_review_browser import CHROMIUM, CHROMIUM_ARGS
from tests.fraud.test_watchlist import FRAUDSTER, VICTIM, near
from voiceid.api.app import create_app
from voiceid.config import Settings
from voiceid.services.root import VoiceIdService
from voiceid.services.views import Role
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.engines import ScriptedEngine, unit
from voiceid.testkit.servers import serve_in_thread

pytestmark = [pytest.mark.browser]

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "desk-browser"
ACCEPT, REJECT = 0.45, 0.30  # raw cosine (scripted vectors), pinned as in tests/api


@pytest.fixture
def desk(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, VoiceIdService, ScriptedEngine]]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (scripts/ensure-services.sh installs Debian's chromium)")
    engine = ScriptedEngine()
    app_settings = settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "database_url": None,
            "admin_key": SecretStr("admin-desk-browser-key-OOURybRNxjZL_MxftqzXpWHwJV5fiJUr"),
            "encryption_key": SecretStr(generate_key_text()),
            "score_norm": "none",
            "accept_threshold": ACCEPT,
            "reject_threshold": REJECT,
            "link_llr_threshold": llr_at(0.7),
            "link_alert_identities": 3,
            "lockout_rejects": 1000,
            "attempt_rate_limit": 1000,  # one speaker takes many calls here
        }
    )
    app = create_app(app_settings, engine=engine)  # type: ignore[arg-type]
    with serve_in_thread(app) as url:
        yield url, app.state.service, engine


def seed(service: VoiceIdService, speaker_id: str, vector: np.ndarray) -> None:
    service.speakers.put(speaker_id, True, "v1", "phone")
    with service.db.transaction() as session:
        speaker = repo.get_speaker(session, speaker_id)
        assert speaker is not None
        repo.set_voiceprint(session, service.cipher, speaker, vector, engine_version(service))
        speaker.status = "ENROLLED"


def engine_version(service: VoiceIdService) -> str:
    return str(service.engine.model_version)


def test_histogram_thresholds_inside_the_plot_and_bins_hold_the_right_counts(desk):
    from playwright.sync_api import expect, sync_playwright

    base, service, engine = desk
    seed(service, "customer", VICTIM)
    # Scores spread over the whole range, some on each side of each threshold.
    cosines = [0.05, 0.12, 0.2, 0.25, 0.28, 0.31, 0.35, 0.38, 0.42, 0.44, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95]
    for i, c in enumerate(cosines):
        probe = engine.register(f"call-{i}".encode(), near(VICTIM, c, 500 + i))
        service.verifications.verify("customer", probe, "audio/basic")
    logged = service.score_log.all(repo.VerificationFilter())
    scores = {v.verification_id: (v.decision, v.score) for v in logged}
    # The fraudster calls as three customers: the third call raises a linked-voice alert.
    for i, customer in enumerate(("cust-1", "cust-2", "cust-3")):
        seed(service, customer, unit(600 + i))
        last = service.verifications.verify(
            customer, engine.register(f"fraud-{i}".encode(), near(FRAUDSTER, 0.95, 610 + i)), "audio/basic"
        )
    assert "LINKED_VOICE" in last.reasons
    _, analyst_key = service.keys.create(Role.ANALYST, "desk browser test")

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/review/login")
            page.fill("#api_key", analyst_key)
            page.click("button:has-text('Sign in')")
            page.fill("input[name=speaker_id]", "customer")
            page.click("#filters button[type=submit]")
            chart = page.locator("figure.chart[data-channel=phone] svg.histogram")
            expect(chart).to_be_visible()
            page.screenshot(path=str(OUTPUT_DIR / "1-histogram.png"), full_page=True)

            plot = chart.locator("rect.plot").bounding_box()
            assert plot is not None
            lines = chart.locator("line.threshold")
            expect(lines).to_have_count(2)
            drawn = {}
            for i in range(2):
                line = lines.nth(i)
                box = line.bounding_box()
                assert box is not None
                # Inside the plot horizontally (not on its frame) and spanning its height.
                assert plot["x"] < box["x"] and box["x"] + box["width"] < plot["x"] + plot["width"]
                assert box["y"] >= plot["y"] - 1 and box["y"] + box["height"] <= plot["y"] + plot["height"] + 1
                drawn[line.get_attribute("data-name")] = float(line.get_attribute("data-value") or "nan")
            assert drawn == pytest.approx({"accept": ACCEPT, "reject": REJECT})

            bars = chart.locator("rect.bar")
            seen = 0
            counted: list[tuple[str, float, float, int, float]] = []
            for i in range(bars.count()):
                bar = bars.nth(i)
                decision = bar.get_attribute("data-decision") or ""
                low, high = (
                    float(bar.get_attribute("data-low") or "nan"),
                    float(bar.get_attribute("data-high") or "nan"),
                )
                n = int(bar.get_attribute("data-count") or "-1")
                expected = sum(1 for d, s in scores.values() if d == decision and s is not None and low <= s < high)
                assert n == expected, (decision, low, high)
                box = bar.bounding_box()
                assert box is not None
                assert plot["x"] <= box["x"] and box["x"] + box["width"] <= plot["x"] + plot["width"] + 0.5
                counted.append((decision, low, high, n, box["height"]))
                seen += n
            assert seen == sum(1 for _, s in scores.values() if s is not None) == len(cosines)
            # Heights are proportional to counts (one scale for every bar).
            per_call = {round(h / n, 1) for *_, n, h in counted}
            assert max(per_call) - min(per_call) < 1.0, per_call
            # Decisions are coloured: the three kinds present on the right side of the thresholds.
            for decision, low, high, _, _ in counted:
                if decision == "ACCEPT":
                    assert high > ACCEPT
                if decision == "REJECT":
                    assert low < REJECT

            expect(page.locator("svg.daily rect.day-bar").first).to_be_visible()

            page.goto(f"{base}/review/queue")
            expect(page.locator("#queue tbody tr[data-kind=LINKED_VOICE]")).to_have_count(1)
            page.screenshot(path=str(OUTPUT_DIR / "2-queue-linked-alert.png"), full_page=True)
            page.click("#queue a:has-text('voice cluster')")
            expect(page.locator("#cluster-alert")).to_be_visible()
            expect(page.locator("#linked tbody tr")).to_have_count(2)
            expect(page.locator("#identities li")).to_have_count(3)
            page.screenshot(path=str(OUTPUT_DIR / "3-voice-cluster.png"), full_page=True)

            # Flag the fraud call, then removal asks first.
            page.goto(f"{base}/review/attempts/{last.verification_id}")
            expect(page.locator("#attempt")).to_be_visible()
            page.screenshot(path=str(OUTPUT_DIR / "4-attempt.png"), full_page=True)
            page.fill("#label", "ring C")
            page.click("#flag-form button[type=submit]")
            expect(page.locator("#watchlist tbody tr")).to_have_count(1)
            page.click("#watchlist a:has-text('Remove')")
            expect(page.locator("#question")).to_contain_text("cannot be undone")
            page.screenshot(path=str(OUTPUT_DIR / "5-confirm-remove.png"), full_page=True)
            page.click("#confirm-form a:has-text('Cancel')")
            expect(page.locator("#watchlist tbody tr")).to_have_count(1)
            page.click("#watchlist a:has-text('Remove')")
            page.click("#confirm-form button[type=submit]")
            expect(page.locator("#watchlist tbody tr")).to_contain_text("empty")
        finally:
            browser.close()


def test_docs_render_with_the_network_unreachable(desk):
    """Swagger UI comes from the package: with every request outside the server refused, /docs still
    renders the operations and offers the Bearer "Authorize" dialog."""
    from playwright.sync_api import expect, sync_playwright

    base, _, _ = desk
    outside: list[str] = []

    def only_local(route, request) -> None:  # type: ignore[no-untyped-def]
        if request.url.startswith(base):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", only_local)
            page = context.new_page()
            page.goto(f"{base}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("voiceid")
            expect(page.locator(".opblock").first).to_be_visible()
            assert page.locator(".opblock").count() >= 20
            expect(page.locator("button.authorize")).to_be_visible()
            page.click("button.authorize")
            expect(page.locator(".auth-container")).to_contain_text("bearerAuth")
            page.screenshot(path=str(OUTPUT_DIR / "6-docs-offline.png"), full_page=False)
        finally:
            browser.close()
    assert outside == [], outside
