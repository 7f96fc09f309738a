"""API and storage fixtures: every test here runs against SQLite and against the local PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete, func, select

from tests.conftest import postgres_database, wav_bytes
from voiceid.api.app import create_app
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.models.files import MODEL_VERSION
from voiceid.services.root import VoiceIdService
from voiceid.storage import models as m
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import generate_key_text
from voiceid.storage.db import Database

ADMIN_KEY = "admin-test-key-qQ8VZiyFywhqdUeN6p8JNxcddg2-msDt"
SESSION_SECRET = "test-session-secret-0123456789-abcdef"
ROLES = ("ivr", "enrolment", "analyst", "admin")


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per backend for the session; PostgreSQL gets a uniquely named database
    that is dropped at the end. Skipped (with the reason) only when no server can be reached."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'voiceid.db'}"
        Database(url).migrate()
        yield url
        return
    with postgres_database() as url:
        db = Database(url)
        db.migrate()
        db.dispose()
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """Direct access to the tables, emptied before each test."""
    database = Database(db_url)
    with database.transaction() as session:
        tables = (
            m.EnrolmentEmbedding,
            m.Verification,
            m.Speaker,
            m.ApiKey,
            m.PinnedDecisionData,
            m.WebhookDelivery,
            m.SelfCalibrationSnapshot,
            m.Challenge,
            # A snapshot names objects the deletes above remove without the change feed.
            m.IndexSnapshotChunk,
            m.IndexSnapshotRow,
        )
        for table in tables:
            session.execute(delete(table))
    yield database
    database.dispose()


class NoInferenceEngine:
    """For tests whose point is that no audio reaches the model (auth, consent, short-circuits)."""

    model_version = MODEL_VERSION

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        raise AssertionError("this request must not reach inference")


def unit(seed: int, dim: int = 192) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class ScriptedEngine:
    """Returns the vector registered for a body: decision logic is tested without the model.
    (The real model is used where the test is about audio.)"""

    model_version: str = MODEL_VERSION
    probes: dict[bytes, tuple[np.ndarray, float]] = field(default_factory=dict)

    def register(self, body: bytes, vector: np.ndarray, net_speech_s: float = 6.0) -> bytes:
        self.probes[body] = (vector, net_speech_s)
        return body

    def analyse(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        vector, speech = self.probes[data]
        quality = QualityReport(speech + 1.0, speech, 30.0, 0.0, 8000, "ULAW", "phone")
        return EmbeddedUtterance(vector.astype(np.float32), self.model_version, quality)


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    service: VoiceIdService

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def put_speaker(self, speaker_id: str, version: str = "v1") -> None:
        r = self.client.put(
            f"/v1/speakers/{speaker_id}",
            json={"consent": {"granted": True, "text_version": version, "channel": "phone"}},
            headers=self.h("enrolment"),
        )
        assert r.status_code in (200, 201), r.text

    def seed_voiceprint(self, speaker_id: str, vector: np.ndarray, model_version: str = MODEL_VERSION) -> None:
        """An ENROLLED speaker without running enrolment audio through the model."""
        self.put_speaker(speaker_id)
        with self.service.db.transaction() as session:
            speaker = repo.get_speaker(session, speaker_id)
            assert speaker is not None
            repo.set_voiceprint(session, self.service.cipher, speaker, vector, model_version)
            speaker.status = "ENROLLED"

    def verify(self, speaker_id: str, body: bytes, content_type: str = "audio/wav", role: str = "ivr") -> dict:
        r = self.client.post(
            f"/v1/speakers/{speaker_id}/verifications",
            content=body,
            headers={**self.h(role), "Content-Type": content_type},
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def asnorm_from_the_first_caller(tmp_path: Path) -> Path:
    """A calibration file whose population AS-norm regime starts at 0 enrolled callers, for tests of the
    cohort's mechanics with a handful of scripted voices (the shipped file scores those on the raw cosine)."""
    from voiceid.verify.calibration import fit_calibration, save_calibrations

    rng = np.random.default_rng(7)
    fits = [
        fit_calibration(
            rng.normal(4.0, 1.0, 2000),
            rng.normal(0.0, 1.0, 50_000),
            target_probe_s=rng.uniform(1.5, 8, 2000),
            nontarget_probe_s=rng.uniform(1.5, 8, 50_000),
            channel=channel,
            norm="as-norm",
            model_version=MODEL_VERSION,
            fitted_on="synthetic",
        )
        for channel in ("phone", "wideband")
    ]
    path = tmp_path / "asnorm-calibration.json"
    save_calibrations(fits, path)
    return path


def count(db: Database, model: type, *where: object) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def make_api(db: Database, db_url: str, settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    opened: list[TestClient] = []

    def make(engine: object | None = None, pin_thresholds: bool = True, **overrides: object) -> Api:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": db_url,
            "admin_key": SecretStr(ADMIN_KEY),
            "encryption_key": SecretStr(generate_key_text()),
            "session_secret": SecretStr(SESSION_SECRET),
            # Explicit, as PostgreSQL deployments must set it (a key store of the test's own).
            "keystore_url": f"sqlite:///{tmp_path / 'data' / 'keystore.db'}",
            "enrol_min_speech_s": 4.0,
            # Tests that are not about the per-speaker attempt limit make many attempts in a second.
            "attempt_rate_limit": 1000,
            "inference_workers": 2,
            "inference_queue": 8,
        }
        if not isinstance(engine, Engine):
            # Scripted vectors are raw cosine material: no cohort normalisation, and thresholds
            # pinned so the decision tests do not move when the shipped calibration is refitted.
            # A scripted engine has no G.711 view of its audio to embed: no phone view either.
            values.update(score_norm="none", enrol_phone_view=False)
            if pin_thresholds:
                values.update(accept_threshold=0.45, reject_threshold=0.30)
        values.update(overrides)
        app_settings = settings.model_copy(update=values)
        if engine is None:
            engine = NoInferenceEngine()
        client = TestClient(create_app(app_settings, engine=engine))  # type: ignore[arg-type]
        client.__enter__()
        opened.append(client)
        keys = {"admin": ADMIN_KEY}
        for role in ("ivr", "enrolment", "analyst"):
            r = client.post("/v1/api-keys", json={"role": role}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
        return Api(client, keys, client.app.state.service)  # type: ignore[attr-defined]

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def crop_wav(path: Path, seconds: float) -> bytes:
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32")
    return wav_bytes(samples[: int(seconds * rate)], rate)
