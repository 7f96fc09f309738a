"""The fraud checks `VoiceIdService` runs inside its own transactions: watchlist screening of every
probe, keeping attempt embeddings for the retention period, duplicate detection at enrolment.

Both 1:N searches run against in-memory indexes, one per process, kept in step with the database
through the change feed (`voiceid.services.index_caches`): only objects changed since the revision a
process holds are read and decrypted. Only vectors of the probe's model version are ever compared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.duplicates import DuplicateMatch, find_duplicates
from voiceid.fraud.index import VectorIndex
from voiceid.fraud.links import MAX_LINK_CANDIDATES, AttemptMeta, Link, alert_identities, find_links
from voiceid.fraud.scale import load_fraud_scale
from voiceid.fraud.watchlist import WatchlistHit, screen
from voiceid.services.index_caches import VoiceprintCache, WatchlistCache
from voiceid.statuses import ReviewKind, ReviewStatus, SpeakerStatus
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import DecryptionError
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker

FloatArray = npt.NDArray[np.float32]
EMBEDDING_DIM = 192
SYNC_BATCH = 500  # ids per IN (...) query when syncing caches


class AttemptIndex:
    """The retained attempt embeddings of one process, in memory, for linked-calls searches.

    Synced incrementally: rows newer than the last sync (with a slack for transactions that commit
    out of order) are decrypted and added; expired ones are dropped in memory; when the database's
    count of retained attempts still differs from the cache (an erasure, a purge, a late commit) the
    id list is re-read and the difference applied, decrypting only what is new.
    """

    # A transaction may commit up to this long after its rows' created_at.
    SLACK = timedelta(minutes=10)

    def __init__(self, cipher: Vault, exact_max: int, max_attempts: int) -> None:
        self._cipher = cipher
        self._exact_max = exact_max
        self._max = max_attempts
        self._lock = threading.Lock()
        self._indexes: dict[str, VectorIndex] = {}
        self._metas: dict[str, dict[str, AttemptMeta]] = {}
        self._expires: dict[str, dict[str, datetime]] = {}
        self._synced: dict[str, datetime] = {}
        self._unreadable: set[str] = set()

    def current(
        self, session: Session, model_version: str, now: datetime
    ) -> tuple[VectorIndex, dict[str, AttemptMeta]]:
        with self._lock:
            index = self._indexes.setdefault(model_version, VectorIndex(EMBEDDING_DIM, exact_max=self._exact_max))
            metas = self._metas.setdefault(model_version, {})
            expires = self._expires.setdefault(model_version, {})
            gone = [vid for vid, when in expires.items() if when <= now]
            self._drop(index, metas, expires, gone)
            last = self._synced.get(model_version)
            rows = fraud_repo.retained_attempt_meta(
                session, model_version, now, None if last is None else last - self.SLACK, self._max
            )
            self._add(session, index, metas, expires, [r for r in rows if self._new(r.verification_id, metas)])
            held = len(metas) + len(self._unreadable)
            if held != min(fraud_repo.count_retained_attempts(session, model_version, now), self._max):
                rows = fraud_repo.retained_attempt_meta(session, model_version, now, None, self._max)
                keep = {r.verification_id for r in rows}
                self._drop(index, metas, expires, [vid for vid in metas if vid not in keep])
                self._unreadable &= keep
                self._add(session, index, metas, expires, [r for r in rows if self._new(r.verification_id, metas)])
            self._synced[model_version] = now
            return index, metas

    def _new(self, verification_id: str, metas: dict[str, AttemptMeta]) -> bool:
        return verification_id not in metas and verification_id not in self._unreadable

    @staticmethod
    def _drop(index: VectorIndex, metas: dict[str, AttemptMeta], expires: dict[str, datetime], ids: list[str]) -> None:
        if ids:
            index.remove(ids)
            for vid in ids:
                metas.pop(vid, None)
                expires.pop(vid, None)

    def _add(
        self,
        session: Session,
        index: VectorIndex,
        metas: dict[str, AttemptMeta],
        expires: dict[str, datetime],
        rows: list[Any],
    ) -> None:
        by_id = {r.verification_id: r for r in rows}
        ids = list(by_id)
        for start in range(0, len(ids), SYNC_BATCH):
            stored = []
            vectors = []
            for a in fraud_repo.attempt_rows(session, ids[start : start + SYNC_BATCH]):
                try:
                    vectors.append(fraud_repo.attempt_vector(self._cipher, a))
                except DecryptionError:
                    # Written under another key (or damaged): unusable for linking, and it must not
                    # fail the verification that triggered the sync. Remembered so it is not retried.
                    self._unreadable.add(a.verification_id)
                    continue
                stored.append(a)
            if not stored:
                continue
            index.add([a.verification_id for a in stored], np.stack(vectors))
            for a in stored:
                r = by_id[a.verification_id]
                metas[a.verification_id] = AttemptMeta(
                    r.verification_id, r.speaker_ref, r.channel, r.decision, r.created_at
                )
                expires[a.verification_id] = a.expires_at


@dataclass
class EnrolmentScreen:
    """What the fraud checks found on one enrolment step."""

    watchlist_hits: list[WatchlistHit] = field(default_factory=list)
    duplicates: list[DuplicateMatch] = field(default_factory=list)
    refusal: VoiceIdError | None = None

    @property
    def reasons(self) -> list[ReviewKind]:
        return ([ReviewKind.WATCHLIST_MATCH] if self.watchlist_hits else []) + (
            [ReviewKind.DUPLICATE_IDENTITY] if self.duplicates else []
        )


@dataclass(frozen=True)
class LinkCheck:
    """The linked calls of one probe, and the identities to alert on ([] when below the alert bar)."""

    links: list[Link]
    alert_identities: list[str]


@dataclass(frozen=True)
class LinkAlert:
    """The OPEN linked-voice review item a call raised or joined, and every call it now holds."""

    review_item_id: str
    verification_ids: list[str]


class FraudChecks:
    def __init__(self, settings: Settings, cipher: Vault, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.cipher = cipher
        self.clock = clock
        # The fraud checks' raw-cosine scale (fraud/data/scale.json), not VOICEID_CALIBRATION_FILE: the
        # verification calibration is quality-aware and holds no raw-cosine fit.
        self.scale = load_fraud_scale()
        load = settings.index_snapshot_load
        self.watchlist = WatchlistCache(cipher, settings.search_exact_max, settings.change_poll_s, load_snapshots=load)
        self.voiceprints = VoiceprintCache(
            cipher, settings.search_exact_max, settings.change_poll_s, load_snapshots=load
        )
        self.attempts = AttemptIndex(cipher, settings.search_exact_max, settings.link_max_attempts)

    @property
    def watchlist_forces_reject(self) -> bool:
        return self.settings.watchlist_action == "reject"

    def screen(
        self, session: Session, vector: FloatArray, model_version: str, channel: str | None = None
    ) -> list[WatchlistHit]:
        index, labels = self.watchlist.current(session, model_version)
        if index is None or len(index) == 0:
            return []
        return screen(
            vector, channel, index, labels, self.watchlist.channels, self.scale, self.settings.watchlist_llr_threshold
        )

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

    # --- linked calls ------------------------------------------------------------------------

    def links(
        self,
        session: Session,
        vector: FloatArray,
        channel: str | None,
        speaker_ref: str,
        model_version: str,
        exclude: str | None = None,
    ) -> list[Link]:
        """Retained attempts under other identities whose voice matches `vector` (calibrated)."""
        index, metas = self.attempts.current(session, model_version, self.clock())
        if len(index) == 0:
            return []
        s = self.settings
        return find_links(
            vector,
            speaker_ref,
            channel,
            index,
            metas,
            self.scale,
            s.link_llr_threshold,
            s.link_pooled_llr_threshold,
            min(len(index), MAX_LINK_CANDIDATES),
            exclude,
        )

    def check_links(
        self, session: Session, vector: FloatArray, channel: str | None, speaker_ref: str, model_version: str
    ) -> LinkCheck:
        """Run on every scored verification before it is logged (its own attempt is not stored yet)."""
        found = self.links(session, vector, channel, speaker_ref, model_version)
        s = self.settings
        return LinkCheck(
            found, alert_identities(found, speaker_ref, self.clock(), s.link_alert_days, s.link_alert_identities)
        )

    def raise_link_alert(
        self, session: Session, verification_id: str, speaker_ref: str, check: LinkCheck
    ) -> LinkAlert | None:
        """One OPEN review item per voice cluster: a new call of a voice already under review adds its
        identities and calls to that item instead of queueing another. None: below the alert bar."""
        if not check.alert_identities:
            return None
        now = self.clock()
        window = timedelta(days=self.settings.link_alert_days)
        calls = [
            verification_id,
            *(link.verification_id for link in check.links if abs(link.created_at - now) <= window),
        ]
        best = max(link.llr for link in check.links)
        for item in fraud_repo.open_items_of_kind(session, ReviewKind.LINKED_VOICE, now - window):
            known_calls = set(item.details.get("verification_ids", []))
            known_ids = set(item.details.get("identities", []))
            if (
                known_calls & set(calls)
                or known_ids & set(check.alert_identities) - {speaker_ref}
                or (item.speaker_ref == speaker_ref)
            ):
                item.details = {
                    **item.details,
                    "identities": sorted(known_ids | set(check.alert_identities)),
                    "verification_ids": sorted(known_calls | set(calls)),
                    "latest_verification_id": verification_id,
                }
                item.score = max(item.score, best)
                session.flush()
                return LinkAlert(item.id, list(item.details["verification_ids"]))
        item = fraud_repo.add_review_item(
            session,
            kind=ReviewKind.LINKED_VOICE,
            status=ReviewStatus.OPEN,
            speaker_ref=speaker_ref,
            matched_ref=verification_id,
            score=best,
            details={
                "identities": check.alert_identities,
                "verification_ids": sorted(calls),
                "latest_verification_id": verification_id,
                "window_days": self.settings.link_alert_days,
            },
            created_at=now,
        )
        return LinkAlert(item.id, sorted(calls))

    # --- enrolment -----------------------------------------------------------------------------

    def screen_enrolment(
        self, session: Session, speaker: Speaker, vector: FloatArray, model_version: str, channel: str | None = None
    ) -> EnrolmentScreen:
        """Screen one enrolment utterance; a hit goes to the review queue and, when hits force
        REJECT, refuses the step (the utterance is not stored)."""
        result = EnrolmentScreen(watchlist_hits=self.screen(session, vector, model_version, channel))
        if result.watchlist_hits:
            best = result.watchlist_hits[0]
            refuse = self.watchlist_forces_reject
            fraud_repo.upsert_review_item(
                session,
                kind=ReviewKind.WATCHLIST_MATCH,
                status=ReviewStatus.REFUSED if refuse else ReviewStatus.OPEN,
                speaker_ref=speaker.speaker_ref,
                matched_ref=best.entry_id,
                score=best.llr,
                details={"watchlist_hits": [h.to_dict() for h in result.watchlist_hits], "scale": "llr"},
                created_at=self.clock(),
            )
            if refuse:
                result.refusal = VoiceIdError(
                    ErrorCode.ENROLMENT_REFUSED,
                    "the enrolment audio matches the fraud watchlist",
                    reasons=[ReviewKind.WATCHLIST_MATCH],
                    watchlist_hits=[h.to_dict() for h in result.watchlist_hits],
                )
        return result

    def check_duplicates(
        self, session: Session, speaker: Speaker, voiceprint: FloatArray, model_version: str, result: EnrolmentScreen
    ) -> SpeakerStatus | None:
        """Called once a voiceprint is built. Returns the status the speaker must take instead of
        ENROLLED (REVIEW_REQUIRED), or None; on refusal sets `result.refusal` after erasing the
        speaker's biometric data, so nothing of a refused enrolment stays."""
        index, refs = self.voiceprints.current(session, model_version, exclude_id=speaker.id)
        # The new voiceprint's channel: the one most of its enrolment audio came through (flushed
        # rows of this transaction included).
        channel = fraud_repo.voiceprint_channels(session, [speaker.id]).get(speaker.id)
        result.duplicates = find_duplicates(
            voiceprint,
            channel,
            index,
            refs,
            self.voiceprints.channels,
            self.scale,
            self.settings.duplicate_llr_threshold,
            exclude=speaker.id,
        )
        if not result.duplicates:
            return None
        best = result.duplicates[0]
        refuse = self.settings.duplicate_action == "refuse"
        fraud_repo.upsert_review_item(
            session,
            kind=ReviewKind.DUPLICATE_IDENTITY,
            status=ReviewStatus.REFUSED if refuse else ReviewStatus.OPEN,
            speaker_ref=speaker.speaker_ref,
            matched_ref=best.speaker_ref,
            score=best.llr,
            details={"matches": [d.to_dict() for d in result.duplicates], "channel": channel, "scale": "llr"},
            created_at=self.clock(),
        )
        if refuse:
            repo.erase_biometrics(session, speaker)
            result.refusal = VoiceIdError(
                ErrorCode.ENROLMENT_REFUSED,
                "this voice is already enrolled under another speaker id",
                reasons=[ReviewKind.DUPLICATE_IDENTITY],
            )
            return SpeakerStatus.ENROLLING
        return SpeakerStatus.REVIEW_REQUIRED
