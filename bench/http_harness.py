"""What the HTTP benches share: the service app on a throw-away SQLite database with the settings a
lab bench must lift, its API keys, and enrolment of a dev speaker over HTTP (used by
bench/api_policy.py and bench/verification_cost.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from voiceid.api.app import create_app
from voiceid.config import Settings
from voiceid.engine import Engine
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.protocol import Utterance
from voiceid.storage.crypto import generate_key_text

ADMIN = "bench-admin-key-33Wkb_aZbnBGzVjNyYoNWruDPYfspPDA"


@contextmanager
def bench_app(base: Settings, engine: Engine | Any | None = None, **overrides: Any) -> Iterator[TestClient]:
    """The app with default settings except: a temporary SQLite data dir and fresh keys, and no
    per-speaker attempt rate limit or lockout (a bench account takes many calls a minute, half of them
    impostors). `engine=None` lets the app build its own, as `voiceid serve` does."""
    with TemporaryDirectory() as tmp:
        settings = base.model_copy(
            update={
                "data_dir": Path(tmp),
                "database_url": None,
                "admin_key": SecretStr(ADMIN),
                "encryption_key": SecretStr(generate_key_text()),
                "attempt_rate_limit": 10_000,
                "lockout_rejects": 10_000,
                **overrides,
            }
        )
        with TestClient(create_app(settings, engine=engine)) as client:
            yield client


def role_headers(client: TestClient, roles: Iterable[str] = ("ivr", "enrolment")) -> dict[str, dict[str, str]]:
    """Authorization headers of a new API key per role, created with the admin key."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    return {
        role: {
            "Authorization": f"Bearer {client.post('/v1/api-keys', json={'role': role}, headers=admin).json()['key']}"
        }
        for role in roles
    }


def enrol(
    client: TestClient, headers: dict[str, str], speaker: str, utterances: list[Utterance], channel: str
) -> int | None:
    """Consent, then the speaker's utterances in order until ENROLLED: how many it took (None: never)."""
    client.put(f"/v1/speakers/{speaker}", json={"consent": {"granted": True, "text_version": "v1"}}, headers=headers)
    for k, utt in enumerate(utterances):
        body, ctype = through_channel(utt.path, channel)
        r = client.post(
            f"/v1/speakers/{speaker}/enrolment-audio", content=body, headers={**headers, "Content-Type": ctype}
        )
        if r.status_code == 200 and r.json()["status"] == "ENROLLED":
            return k + 1
    return None
