"""The service app under test: its fixed secrets, a handle on a started app (client, role keys,
service) and a row counter for assertions on the tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from voiceid.models.files import MODEL_VERSION
from voiceid.services.root import VoiceIdService
from voiceid.statuses import SpeakerStatus
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database

ADMIN_KEY = "admin-test-key-qQ8VZiyFywhqdUeN6p8JNxcddg2-msDt"
SESSION_SECRET = "test-session-secret-0123456789-abcdef"
ROLES = ("ivr", "enrolment", "analyst", "admin")


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
            speaker.status = SpeakerStatus.ENROLLED

    def verify(self, speaker_id: str, body: bytes, content_type: str = "audio/wav", role: str = "ivr") -> Any:
        r = self.client.post(
            f"/v1/speakers/{speaker_id}/verifications",
            content=body,
            headers={**self.h(role), "Content-Type": content_type},
        )
        assert r.status_code == 200, r.text
        return r.json()


def count(db: Database, model: type, *where: Any) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
