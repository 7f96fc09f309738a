"""Issue 10 points 1-2 over HTTP, on the real engine: the same uploads the attacker sent, each
answered 4xx with a stable code, nothing stored, and the process's peak memory barely moving."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.memory import peak_growth
from voiceid.engine import Engine
from voiceid.storage import models as m
from voiceid.storage.db import Database
from voiceid.testkit.api import Api, count
from voiceid.testkit.audio import tone, wav_bytes
from voiceid.testkit.bombs import flac_bomb, l16_odd_rate, mulaw_odd_rate
from voiceid.testkit.engines import unit

BOMBS: dict[str, Callable[[], tuple[bytes, str]]] = {
    "mulaw 14 kB rate=12001": mulaw_odd_rate,
    "L16 57 kB rate=24001": l16_odd_rate,
    "L16 rate=383999": lambda: l16_odd_rate(rate=383_999),
    "FLAC 179 s x 8 ch x 655350 Hz": lambda: (flac_bomb(), "audio/flac"),
    "FLAC 179 s x 2 ch x 192 kHz": lambda: (flac_bomb(rate=192_000, channels=2), "audio/flac"),
}
EXPECTED = {
    "L16 rate=383999": (422, "UNSUPPORTED_SAMPLE_RATE"),
    "FLAC 179 s x 8 ch x 655350 Hz": (422, "UNSUPPORTED_SAMPLE_RATE"),
    "FLAC 179 s x 2 ch x 192 kHz": (413, "DECODED_AUDIO_TOO_LARGE"),
}


@pytest.fixture
def api(make_api: Callable[..., Api], engine: Engine) -> Api:
    api = make_api(engine=engine)
    api.seed_voiceprint("alice", unit(1), engine.model_version)
    # One real request first, so the model's and VAD's one-off allocations are not counted below.
    api.client.post(
        "/v1/speakers/alice/verifications",
        content=wav_bytes(tone(2.0), 16000),
        headers={**api.h("ivr"), "Content-Type": "audio/wav"},
    )
    return api


@pytest.mark.parametrize("name", list(BOMBS))
def test_decoder_bomb_is_answered_4xx_with_bounded_memory(name: str, api: Api, db: Database) -> None:
    body, content_type = BOMBS[name]()
    before = count(db, m.Verification)
    with peak_growth() as growth:
        r = api.client.post(
            "/v1/speakers/alice/verifications", content=body, headers={**api.h("ivr"), "Content-Type": content_type}
        )
    assert 400 <= r.status_code < 500, r.text
    if name in EXPECTED:
        assert (r.status_code, r.json()["code"]) == EXPECTED[name]
    else:  # random bytes at an odd rate now decode and resample cheaply, and hold no speech
        assert r.json()["code"] in {"NO_SPEECH", "AUDIO_TOO_SHORT"}
    assert count(db, m.Verification) == before
    assert growth.mb < 200, f"{name}: peak RSS grew by {growth.mb:.0f} MB"


def test_flac_labelled_audio_basic_is_refused_naming_both(api: Api) -> None:
    r = api.client.post(
        "/v1/speakers/alice/verifications",
        content=wav_bytes(tone(2.0), 16000, "PCM_16", "FLAC"),
        headers={**api.h("ivr"), "Content-Type": "audio/basic"},
    )
    assert r.status_code == 415
    assert r.json()["code"] == "CONTENT_TYPE_MISMATCH"
    assert "FLAC" in r.json()["message"] and "audio/basic" in r.json()["message"]


def test_error_bodies_never_leak_object_reprs(api: Api) -> None:
    r = api.client.post(
        "/v1/speakers/alice/verifications",
        content=b"RIFF\x10\x00\x00\x00WAVEfmt junk" * 4,
        headers={**api.h("ivr"), "Content-Type": "audio/wav"},
    )
    assert r.status_code == 422
    assert " at 0x" not in r.text and "BytesIO" not in r.text
