"""The fraud checks `VoiceIdService` runs inside its own transactions: watchlist screening of every
probe, keeping attempt embeddings for the retention period, duplicate detection at enrolment.

Both 1:N searches run against in-memory indexes, one per process, kept in step with the database:
- the watchlist index is reloaded when the `fraud_generations` counter moved (another worker
  changed the list), and patched in place after a change made by this process;
- the voiceprint index is synced incrementally from `speakers.updated_at`, decrypting only
  voiceprints that are new or changed since the last sync.
Only vectors of the probe's model version are ever compared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.duplicates import DuplicateMatch, find_duplicates
from voiceid.fraud.index import VectorIndex
from voiceid.fraud.watchlist import WatchlistHit, screen
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker, WatchlistEntry

FloatArray = npt.NDArray[np.float32]
EMBEDDING_DIM = 192
PREFETCH_CHUNK = 500

# Review-queue vocabulary.
KIND_DUPLICATE = "DUPLICATE_IDENTITY"
KIND_WATCHLIST = "WATCHLIST_MATCH"
OPEN = "OPEN"
REFUSED = "REFUSED"
APPROVED = "APPROVED"
REJECTED = "REJECTED"


class WatchlistCache:
    def __init__(self, cipher: Vault, exact_max: int) -> None:
        self._cipher = cipher
        self._exact_max = exact_max
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._indexes: dict[str, VectorIndex] = {}
        self._labels: dict[str, str] = {}
        self._versions: dict[str, str] = {}

    def _new_index(self) -> VectorIndex:
        return VectorIndex(EMBEDDING_DIM, exact_max=self._exact_max)

    def current(self, session: Session, model_version: str) -> tuple[VectorIndex | None, dict[str, str]]:
        generation = fraud_repo.watchlist_generation(session)
        with self._lock:
            if generation != self._generation:
                self._reload(session, generation)
            return self._indexes.get(model_version), self._labels

    def _reload(self, session: Session, generation: int) -> None:
        by_version: dict[str, tuple[list[str], list[FloatArray]]] = {}
        labels: dict[str, str] = {}
        versions: dict[str, str] = {}
        for row in fraud_repo.list_watchlist(session):
            keys, vectors = by_version.setdefault(row.model_version, ([], []))
            keys.append(row.id)
            vectors.append(fraud_repo.watchlist_vector(self._cipher, row))
            labels[row.id] = row.label
            versions[row.id] = row.model_version
        indexes = {}
        for version, (keys, vectors) in by_version.items():
            index = self._new_index()
            index.add(keys, np.stack(vectors))
            indexes[version] = index
        self._indexes, self._labels, self._versions, self._generation = indexes, labels, versions, generation

    def added(self, row: WatchlistEntry, vector: FloatArray, generation: int) -> None:
        """Patch in an entry this process just committed; a gap in generations means another
        process changed the list too, so the next screen reloads instead."""
        with self._lock:
            if self._generation is None or generation != self._generation + 1:
                self._generation = None
                return
            index = self._indexes.setdefault(row.model_version, self._new_index())
            index.add([row.id], vector)
            self._labels[row.id] = row.label
            self._versions[row.id] = row.model_version
            self._generation = generation

    def removed(self, entry_id: str, generation: int) -> None:
        with self._lock:
            if self._generation is None or generation != self._generation + 1:
                self._generation = None
                return
            version = self._versions.pop(entry_id, None)
            if version is not None and version in self._indexes:
                self._indexes[version].remove([entry_id])
            self._labels.pop(entry_id, None)
            self._generation = generation


class VoiceprintCache:
    def __init__(self, cipher: Vault, exact_max: int) -> None:
        self._cipher = cipher
        self._exact_max = exact_max
        self._lock = threading.Lock()
        self._indexes: dict[str, VectorIndex] = {}
        self._stamps: dict[str, tuple[str, datetime]] = {}  # speaker id -> (model version, updated_at)
        self._refs: dict[str, str] = {}

    def current(self, session: Session, model_version: str, exclude_id: str) -> tuple[VectorIndex, dict[str, str]]:
        """The index of every voiceprint but `exclude_id`'s: the speaker being enrolled has
        uncommitted changes in `session`, which must not leak into the cache if it rolls back."""
        rows = session.execute(
            select(Speaker.id, Speaker.speaker_ref, Speaker.voiceprint_model_version, Speaker.updated_at).where(
                Speaker.voiceprint_model_version.is_not(None)
            )
        ).all()
        with self._lock:
            rows = [row for row in rows if row.id != exclude_id]
            seen = {row.id for row in rows}
            for gone in [sid for sid in self._stamps if sid not in seen]:
                version, _ = self._stamps.pop(gone)
                self._indexes[version].remove([gone])
                self._refs.pop(gone, None)
            changed = [
                row.id for row in rows if self._stamps.get(row.id) != (row.voiceprint_model_version, row.updated_at)
            ]
            if changed:
                speakers = session.scalars(select(Speaker).where(Speaker.id.in_(changed))).all()
                for start in range(0, len(speakers), PREFETCH_CHUNK):
                    chunk = speakers[start : start + PREFETCH_CHUNK]
                    # One key-store read per chunk instead of one per voiceprint (storage/keys.py).
                    self._cipher.prefetch(s.voiceprint for s in chunk if s.voiceprint is not None)
                    for speaker in chunk:
                        self._store(speaker)
            index = self._indexes.setdefault(model_version, self._new_index())
            return index, self._refs

    def _new_index(self) -> VectorIndex:
        return VectorIndex(EMBEDDING_DIM, exact_max=self._exact_max)

    def _store(self, speaker: Speaker) -> None:
        previous = self._stamps.pop(speaker.id, None)
        if previous is not None:
            self._indexes[previous[0]].remove([speaker.id])
        vector = repo.get_voiceprint(self._cipher, speaker)
        if vector is None or speaker.voiceprint_model_version is None:
            return
        version = speaker.voiceprint_model_version
        self._indexes.setdefault(version, self._new_index()).add([speaker.id], vector)
        self._stamps[speaker.id] = (version, speaker.updated_at)
        self._refs[speaker.id] = speaker.speaker_ref


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
        self.watchlist = WatchlistCache(cipher, settings.search_exact_max)
        self.voiceprints = VoiceprintCache(cipher, settings.search_exact_max)

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
