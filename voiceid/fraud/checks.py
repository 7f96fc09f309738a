"""The fraud checks `VoiceIdService` runs inside its own transactions: watchlist screening of every
probe, keeping attempt embeddings for the retention period, duplicate detection at enrolment.

Both 1:N searches run against in-memory indexes, one per process, kept in step with the database
through the change feed (`voiceid.fraud.caches`): only objects changed since the revision a
process holds are read and decrypted. Only vectors of the probe's model version are ever compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.caches import VoiceprintCache, WatchlistCache
from voiceid.fraud.duplicates import DuplicateMatch, find_duplicates
from voiceid.fraud.watchlist import WatchlistHit, screen
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker

FloatArray = npt.NDArray[np.float32]
EMBEDDING_DIM = 192

# Review-queue vocabulary.
KIND_DUPLICATE = "DUPLICATE_IDENTITY"
KIND_WATCHLIST = "WATCHLIST_MATCH"
OPEN = "OPEN"
REFUSED = "REFUSED"
APPROVED = "APPROVED"
REJECTED = "REJECTED"


@dataclass
class EnrolmentScreen:
    """What the fraud checks found on one enrolment step."""

    watchlist_hits: list[WatchlistHit] = field(default_factory=list)
    duplicates: list[DuplicateMatch] = field(default_factory=list)
    refusal: VoiceIdError | None = None

    @property
    def reasons(self) -> list[str]:
        return (["WATCHLIST_MATCH"] if self.watchlist_hits else []) + (
            ["DUPLICATE_IDENTITY"] if self.duplicates else []
        )


class FraudChecks:
    def __init__(self, settings: Settings, cipher: Vault, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.cipher = cipher
        self.clock = clock
        self.watchlist = WatchlistCache(cipher, settings.search_exact_max, settings.change_poll_s)
        self.voiceprints = VoiceprintCache(cipher, settings.search_exact_max, settings.change_poll_s)

    @property
    def watchlist_forces_reject(self) -> bool:
        return self.settings.watchlist_action == "reject"

    def screen(self, session: Session, vector: FloatArray, model_version: str) -> list[WatchlistHit]:
        index, labels = self.watchlist.current(session, model_version)
        if index is None or len(index) == 0:
            return []
        return screen(vector, index, labels, self.settings.watchlist_threshold)

    def keep_attempt(
        self, session: Session, verification_id: str, speaker_ref: str, vector: FloatArray, model_version: str
    ) -> None:
        now = self.clock()
        fraud_repo.add_attempt_embedding(
            session,
            self.cipher,
            verification_id,
            speaker_ref,
            vector,
            model_version,
            created_at=now,
            expires_at=now + timedelta(days=self.settings.attempt_retention_days),
        )

    def screen_enrolment(
        self, session: Session, speaker: Speaker, vector: FloatArray, model_version: str
    ) -> EnrolmentScreen:
        """Screen one enrolment utterance; a hit goes to the review queue and, when hits force
        REJECT, refuses the step (the utterance is not stored)."""
        result = EnrolmentScreen(watchlist_hits=self.screen(session, vector, model_version))
        if result.watchlist_hits:
            best = result.watchlist_hits[0]
            refuse = self.watchlist_forces_reject
            fraud_repo.add_review_item(
                session,
                kind=KIND_WATCHLIST,
                status=REFUSED if refuse else OPEN,
                speaker_ref=speaker.speaker_ref,
                matched_ref=best.entry_id,
                score=best.score,
                details={"watchlist_hits": [h.to_dict() for h in result.watchlist_hits]},
                created_at=self.clock(),
            )
            if refuse:
                result.refusal = VoiceIdError(
                    ErrorCode.ENROLMENT_REFUSED,
                    "the enrolment audio matches the fraud watchlist",
                    reasons=["WATCHLIST_MATCH"],
                    watchlist_hits=[h.to_dict() for h in result.watchlist_hits],
                )
        return result

    def check_duplicates(
        self, session: Session, speaker: Speaker, voiceprint: FloatArray, model_version: str, result: EnrolmentScreen
    ) -> str | None:
        """Called once a voiceprint is built. Returns the status the speaker must take instead of
        ENROLLED ("REVIEW_REQUIRED"), or None; on refusal sets `result.refusal` after erasing the
        speaker's biometric data, so nothing of a refused enrolment stays."""
        index, refs = self.voiceprints.current(session, model_version, exclude_id=speaker.id)
        result.duplicates = find_duplicates(
            voiceprint, index, refs, self.settings.duplicate_threshold, exclude=speaker.id
        )
        if not result.duplicates:
            return None
        best = result.duplicates[0]
        refuse = self.settings.duplicate_action == "refuse"
        fraud_repo.add_review_item(
            session,
            kind=KIND_DUPLICATE,
            status=REFUSED if refuse else OPEN,
            speaker_ref=speaker.speaker_ref,
            matched_ref=best.speaker_ref,
            score=best.score,
            details={"matches": [{"speaker_id": d.speaker_ref, "score": d.score} for d in result.duplicates]},
            created_at=self.clock(),
        )
        if refuse:
            repo.erase_biometrics(session, speaker)
            result.refusal = VoiceIdError(
                ErrorCode.ENROLMENT_REFUSED,
                "this voice is already enrolled under another speaker id",
                reasons=["DUPLICATE_IDENTITY"],
            )
            return "ENROLLING"
        return "REVIEW_REQUIRED"
