"""What a fraud analyst does: watchlist entries, the review queue, attempt details, the retention purge.

The HTTP routes, the review page and the CLI all call `FraudDesk` (`VoiceIdService.desk`); it works on
the process's `ServingContext` (its database, cipher, clock, inference pool and fraud caches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.links import Link, identities_within
from voiceid.fraud.watchlist import pool_voice
from voiceid.services import audit
from voiceid.services.adaptation import Adaptation, Reverted, RevertReason
from voiceid.services.audit import AuditAction
from voiceid.services.retention import purge_attempts  # the worker's job: one implementation
from voiceid.services.serving import ServingContext
from voiceid.services.views import VerificationView
from voiceid.statuses import ReviewKind, ReviewStatus, SpeakerStatus
from voiceid.storage import adaptation_repo, fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.models import AttemptEmbedding, ReviewItem, Verification, WatchlistEntry

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
MAX_LABEL = 128
MAX_NOTE = 2000


@dataclass(frozen=True)
class WatchlistEntryView:
    entry_id: str
    label: str
    note: str | None
    source: str
    verification_id: str | None
    speaker_id: str | None
    model_version: str
    created_by: str | None
    created_at: datetime
    channel: str | None = None  # the channel its samples came through; it is screened on that scale
    samples: int = 1  # flagged calls pooled into this voice
    created: bool = True  # False when the call was already part of this entry (idempotent flagging)

    @classmethod
    def from_row(cls, row: WatchlistEntry, created: bool = True) -> WatchlistEntryView:
        return cls(
            entry_id=row.id,
            label=row.label,
            note=row.note,
            source=row.source,
            verification_id=row.verification_id,
            speaker_id=row.speaker_ref,
            model_version=row.model_version,
            created_by=row.created_by,
            created_at=row.created_at,
            channel=row.channel,
            samples=row.samples,
            created=created,
        )


@dataclass(frozen=True)
class ReviewItemView:
    item_id: str
    kind: str
    status: str
    speaker_id: str
    matched_ref: str
    score: float
    details: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    @classmethod
    def from_row(cls, row: ReviewItem) -> ReviewItemView:
        return cls(
            item_id=row.id,
            kind=row.kind,
            status=row.status,
            speaker_id=row.speaker_ref,
            matched_ref=row.matched_ref,
            score=row.score,
            details=dict(row.details),
            created_at=row.created_at,
            resolved_at=row.resolved_at,
            resolved_by=row.resolved_by,
        )


@dataclass(frozen=True)
class AttemptDetail:
    verification: VerificationView
    embedding_expires_at: datetime | None  # None: not kept (unscored, expired or erased)
    watchlist_entries: list[WatchlistEntryView]  # entries already made from this attempt


@dataclass(frozen=True)
class LinkedCalls:
    """One attempt's voice cluster: the calls of the same voice on other identities."""

    verification: VerificationView
    links: list[Link]
    identities: list[str]  # the attempt's own first, then every other identity linked
    identities_in_window: list[str]  # those heard within the alert window of the attempt
    threshold_llr: float
    alert_identities: int
    alert_days: float

    @property
    def alert(self) -> bool:
        return len(self.identities_in_window) >= self.alert_identities


def _text(label: str, note: str | None) -> tuple[str, str | None]:
    label = label.strip()
    if not label or len(label) > MAX_LABEL:
        raise VoiceIdError(ErrorCode.INVALID_REQUEST, f"label must be 1-{MAX_LABEL} characters")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise VoiceIdError(ErrorCode.INVALID_REQUEST, f"note must be at most {MAX_NOTE} characters")
    return label, note


def _verification(session: Session, verification_id: str) -> Verification:
    row = repo.get_verification(session, verification_id)
    if row is None:
        raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {verification_id!r}")
    return row


def _kept_embedding(session: Session, verification_id: str, now: datetime) -> AttemptEmbedding:
    """The attempt's kept embedding, or EMBEDDING_NOT_AVAILABLE (what flagging and linking need)."""
    kept = fraud_repo.get_attempt_embedding(session, verification_id, now)
    if kept is None:
        raise VoiceIdError(
            ErrorCode.EMBEDDING_NOT_AVAILABLE,
            "this attempt's embedding is not kept (not scored, past retention, or the speaker was erased)",
        )
    return kept


class FraudDesk:
    def __init__(self, ctx: ServingContext) -> None:
        self.ctx = ctx
        self.adaptation = Adaptation(ctx)

    # --- watchlist -------------------------------------------------------------------------

    def _add(
        self,
        vector: FloatArray,
        model_version: str,
        channel: str | None,
        entry_id: str | None,
        *,
        label: str,
        note: str | None,
        source: str,
        verification_id: str | None,
        speaker_ref: str | None,
        created_by: str | None,
    ) -> WatchlistEntryView:
        """Pool `vector` into the voice it belongs to (the entry `entry_id`, else the entry with the
        same label, model and channel), or start a new entry. A call that is already a sample of an
        entry changes nothing: flagging is idempotent."""
        ctx = self.ctx
        with ctx.db.transaction() as session:
            if verification_id is not None:
                existing = fraud_repo.entry_of_verification(session, verification_id)
                if existing is not None:
                    return WatchlistEntryView.from_row(existing, created=False)
            now = ctx.now()
            if entry_id is not None:
                row = fraud_repo.get_watchlist_entry(session, entry_id)
                if row is None:
                    raise VoiceIdError(ErrorCode.NOT_FOUND, f"no watchlist entry {entry_id!r}")
                if row.model_version != model_version or (row.channel or "phone") != (channel or "phone"):
                    raise VoiceIdError(
                        ErrorCode.CONFLICT,
                        f"entry {entry_id!r} holds {row.channel or 'phone'} audio of model {row.model_version}; "
                        f"this call is {channel or 'phone'} audio of {model_version}. Flag it without entry_id "
                        "to start an entry on its own channel",
                    )
            else:
                row = fraud_repo.find_watchlist_entry(session, label, model_version, channel)
            if row is None:
                row = fraud_repo.add_watchlist_entry(
                    session,
                    ctx.cipher,
                    vector,
                    model_version,
                    created_at=now,
                    label=label,
                    note=note,
                    source=source,
                    verification_id=verification_id,
                    speaker_ref=speaker_ref,
                    created_by=created_by,
                    channel=channel,
                    samples=1,
                )
                fraud_repo.add_watchlist_sample(
                    session, ctx.cipher, row.id, vector, model_version, channel, verification_id, now
                )
                pooled = vector
            else:
                samples = fraud_repo.watchlist_samples(session, row.id)
                if not samples:  # an entry made before pooling existed: its vector is its one sample
                    samples = [
                        fraud_repo.add_watchlist_sample(
                            session,
                            ctx.cipher,
                            row.id,
                            fraud_repo.watchlist_vector(ctx.cipher, row),
                            row.model_version,
                            row.channel,
                            row.verification_id,
                            row.created_at,
                        )
                    ]
                if len(samples) >= ctx.settings.watchlist_max_samples:
                    raise VoiceIdError(
                        ErrorCode.CONFLICT,
                        f"entry {row.id!r} already pools {len(samples)} calls "
                        f"(VOICEID_WATCHLIST_MAX_SAMPLES={ctx.settings.watchlist_max_samples})",
                    )
                fraud_repo.add_watchlist_sample(
                    session, ctx.cipher, row.id, vector, model_version, channel, verification_id, now
                )
                vectors = [fraud_repo.sample_vector(ctx.cipher, x) for x in samples] + [vector]
                pooled = pool_voice(np.stack(vectors))
                fraud_repo.replace_watchlist_vector(session, ctx.cipher, row, pooled, len(vectors))
                if note and not row.note:
                    row.note = note
            generation = fraud_repo.bump_watchlist_generation(session)
            view = WatchlistEntryView.from_row(row)
            audit.append(
                session,
                AuditAction.WATCHLIST_ADDED,
                row.id,
                {"label": row.label, "source": row.source},
                ctx.now(),
            )
        ctx.fraud.watchlist.added(row, pooled, generation)
        return view

    def add_from_verification(
        self,
        verification_id: str,
        label: str,
        note: str | None,
        created_by: str | None,
        entry_id: str | None = None,
    ) -> WatchlistEntryView:
        """Flag an attempt as fraud: its kept embedding joins the watchlist voice `label` (or the
        entry `entry_id`), pooled with the other flagged calls of that voice on its channel."""
        label, note = _text(label, note)
        ctx = self.ctx
        with ctx.db.transaction() as session:
            verification = _verification(session, verification_id)
            existing = fraud_repo.entry_of_verification(session, verification_id)
            if existing is not None:
                return WatchlistEntryView.from_row(existing, created=False)
            kept = _kept_embedding(session, verification_id, ctx.now())
            vector = fraud_repo.attempt_vector(ctx.cipher, kept)
            model_version, speaker_ref, channel = kept.model_version, kept.speaker_ref, verification.channel
            # A call flagged as fraud never stays in a voiceprint: taken out, the voiceprint rebuilt without it.
            self.adaptation.revert(session, adaptation_repo.calls_of(session, [verification_id]), RevertReason.FLAGGED)
        return self._add(
            vector,
            model_version,
            channel,
            entry_id,
            label=label,
            note=note,
            source="verification",
            verification_id=verification_id,
            speaker_ref=speaker_ref,
            created_by=created_by,
        )

    def add_from_audio(
        self,
        data: bytes,
        content_type: str | None,
        label: str,
        note: str | None,
        created_by: str | None,
        entry_id: str | None = None,
    ) -> WatchlistEntryView:
        """A fraud voice known from elsewhere (a recorded call): same decoder, gates and model as a call."""
        label, note = _text(label, note)
        utterance = self.ctx.analyse(data, content_type)
        return self._add(
            utterance.vector,
            utterance.model_version,
            utterance.quality.channel,
            entry_id,
            label=label,
            note=note,
            source="audio",
            verification_id=None,
            speaker_ref=None,
            created_by=created_by,
        )

    def list_watchlist(self) -> list[WatchlistEntryView]:
        with self.ctx.db.transaction() as session:
            return [WatchlistEntryView.from_row(r) for r in fraud_repo.list_watchlist(session)]

    def delete_watchlist_entry(self, entry_id: str) -> None:
        ctx = self.ctx
        with ctx.db.transaction() as session:
            row = fraud_repo.get_watchlist_entry(session, entry_id)
            if row is None:
                raise VoiceIdError(ErrorCode.NOT_FOUND, f"no watchlist entry {entry_id!r}")
            fraud_repo.delete_watchlist_entry(session, row)
            generation = fraud_repo.bump_watchlist_generation(session)
            audit.append(session, AuditAction.WATCHLIST_DELETED, entry_id, {"label": row.label}, ctx.now())
        ctx.fraud.watchlist.removed(entry_id, generation)
        ctx.db.flush_erased()

    # --- adaptation ------------------------------------------------------------------------

    def unadapt(self, verification_id: str) -> Reverted:
        """Take one accepted call out of the voiceprint it adapted; the voiceprint is rebuilt without it."""
        return self.adaptation.revert_verification(verification_id)

    def revert_adaptation(self, speaker_id: str) -> Reverted:
        """Take every call out of a speaker's adapted voiceprints: scored against the enrolment ones again."""
        return self.adaptation.revert_speaker(speaker_id)

    # --- attempts and retention ---------------------------------------------------------------

    def attempt(self, verification_id: str) -> AttemptDetail:
        ctx = self.ctx
        with ctx.db.transaction() as session:
            row = _verification(session, verification_id)
            kept = fraud_repo.get_attempt_embedding(session, verification_id, ctx.now())
            entries = [
                WatchlistEntryView.from_row(e)
                for e in fraud_repo.list_watchlist(session)
                if e.verification_id == verification_id
            ]
            return AttemptDetail(VerificationView.from_row(row), None if kept is None else kept.expires_at, entries)

    def purge_expired(self) -> int:
        """Delete every attempt embedding past its retention; the number removed."""

        return purge_attempts(self.ctx)

    # --- review queue ------------------------------------------------------------------------

    def review_item(self, item_id: str) -> ReviewItemView:
        with self.ctx.db.transaction() as session:
            item = fraud_repo.get_review_item(session, item_id)
            if item is None:
                raise VoiceIdError(ErrorCode.NOT_FOUND, f"no review item {item_id!r}")
            return ReviewItemView.from_row(item)

    def watchlist_entry(self, entry_id: str) -> WatchlistEntryView:
        with self.ctx.db.transaction() as session:
            row = fraud_repo.get_watchlist_entry(session, entry_id)
            if row is None:
                raise VoiceIdError(ErrorCode.NOT_FOUND, f"no watchlist entry {entry_id!r}")
            return WatchlistEntryView.from_row(row)

    def review_queue(self, status: ReviewStatus | None = ReviewStatus.OPEN) -> list[ReviewItemView]:
        with self.ctx.db.transaction() as session:
            return [ReviewItemView.from_row(r) for r in fraud_repo.list_review_items(session, status)]

    def resolve(self, item_id: str, approve: bool, resolved_by: str | None) -> ReviewItemView:
        """Approve: the held speaker becomes ENROLLED (once no other item holds them). Reject: their
        biometric data is erased and they are back to ENROLLING (consent kept)."""
        ctx = self.ctx
        with ctx.db.transaction() as session:
            item = fraud_repo.get_review_item(session, item_id, for_update=True)
            if item is None:
                raise VoiceIdError(ErrorCode.NOT_FOUND, f"no review item {item_id!r}")
            if item.status != ReviewStatus.OPEN:
                raise VoiceIdError(ErrorCode.CONFLICT, f"review item is already {item.status}")
            now = ctx.now()
            speaker = repo.get_speaker(session, item.speaker_ref, for_update=True)
            if speaker is None and item.kind != ReviewKind.LINKED_VOICE:
                # Erased since the item was queued: there is nobody left to approve or reject.
                item.status, item.resolved_at, item.resolved_by = ReviewStatus.CLOSED, now, "erasure"
                return ReviewItemView.from_row(item)
            item.status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
            item.resolved_at, item.resolved_by = now, resolved_by
            dismissed_alert = approve and item.kind == ReviewKind.LINKED_VOICE
            session.flush()
            # A linked-voice alert is a finding about calls, not a hold on an enrolment: resolving it
            # records the analyst's conclusion and changes no speaker.
            if speaker is not None and item.kind != ReviewKind.LINKED_VOICE:
                if not approve:
                    repo.erase_biometrics(session, speaker)
                    if speaker.status != SpeakerStatus.OPTED_OUT:
                        speaker.status = SpeakerStatus.ENROLLING
                    speaker.updated_at = now
                elif speaker.status == SpeakerStatus.REVIEW_REQUIRED and not fraud_repo.open_review_items(
                    session, item.speaker_ref
                ):
                    speaker.status = (
                        SpeakerStatus.ENROLLED if speaker.voiceprint is not None else SpeakerStatus.ENROLLING
                    )
                    speaker.updated_at = now
            view = ReviewItemView.from_row(item)
            audit.append(
                session,
                AuditAction.REVIEW_RESOLVED,
                item.id,
                {"decision": item.status, "kind": item.kind, "speaker_id": item.speaker_ref},
                now,
            )
        if not approve:
            ctx.db.flush_erased()
        if dismissed_alert:
            # Not fraud after all: the calls the alert took out of voiceprints go back where the rule
            # still allows (services/adaptation.py). Its own transaction, once the dismissal is committed;
            # a failure leaves them out (they are only lost adaptation) and must not undo the dismissal.
            try:
                self.adaptation.restore_dismissed(item_id)
            except Exception:
                log.exception("restoring the adaptation of dismissed alert %s failed", item_id)
        return view

    # --- linked calls (fraud-ring view) ---------------------------------------------------------

    def linked(self, verification_id: str) -> LinkedCalls:
        """The other retained attempts whose voice matches this one under other identities."""
        ctx = self.ctx
        with ctx.db.transaction() as session:
            row = _verification(session, verification_id)
            kept = _kept_embedding(session, verification_id, ctx.now())
            vector = fraud_repo.attempt_vector(ctx.cipher, kept)
            found = ctx.fraud.links(
                session, vector, row.channel, row.speaker_ref, kept.model_version, exclude=verification_id
            )
            s = ctx.settings
            return LinkedCalls(
                verification=VerificationView.from_row(row),
                links=found,
                identities=identities_within(found, row.speaker_ref, row.created_at, s.attempt_retention_days),
                identities_in_window=identities_within(found, row.speaker_ref, row.created_at, s.link_alert_days),
                threshold_llr=s.link_llr_threshold,
                alert_identities=s.link_alert_identities,
                alert_days=s.link_alert_days,
            )
