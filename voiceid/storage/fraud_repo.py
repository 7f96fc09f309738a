"""Fraud-workspace queries and writes: attempt embeddings, watchlist, review queue. Callers own the
transaction, as in `repositories`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from voiceid.statuses import ReviewKind, ReviewStatus
from voiceid.storage.crypto import DecryptionError, associated_data
from voiceid.storage.keys import Vault, mark_for_shredding, speaker_owner, watchlist_owner
from voiceid.storage.models import (
    ApiKey,
    AttemptEmbedding,
    EnrolmentEmbedding,
    FraudGeneration,
    ReviewItem,
    ReviewSessionRow,
    Speaker,
    Verification,
    WatchlistEntry,
    WatchlistSample,
)
from voiceid.storage.repositories import new_id

WATCHLIST = "watchlist"


# --- attempt embeddings ----------------------------------------------------------------------


def add_attempt_embedding(
    session: Session,
    vault: Vault,
    verification_id: str,
    speaker_ref: str,
    vector: npt.NDArray[np.float32],
    model_version: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    # Under the claimed speaker's data key: the probe is erased with that speaker.
    speaker_id = session.scalar(select(Speaker.id).where(Speaker.speaker_ref == speaker_ref))
    if speaker_id is None:
        raise DecryptionError(f"no speaker {speaker_ref!r} to key the attempt embedding to")
    blob = vault.seal_vector(
        speaker_owner(speaker_id), vector, associated_data("attempt_embedding", verification_id, model_version)
    )
    session.add(
        AttemptEmbedding(
            verification_id=verification_id,
            speaker_ref=speaker_ref,
            model_version=model_version,
            ciphertext=blob,
            created_at=created_at,
            expires_at=expires_at,
        )
    )
    session.flush()


def get_attempt_embedding(session: Session, verification_id: str, now: datetime) -> AttemptEmbedding | None:
    """The row, unless it has expired (a row past its time is gone for every purpose, purged or not)."""
    row = session.get(AttemptEmbedding, verification_id)
    return None if row is None or row.expires_at <= now else row


def attempt_vector(vault: Vault, row: AttemptEmbedding) -> npt.NDArray[np.float32]:
    return vault.open_vector(
        row.ciphertext, associated_data("attempt_embedding", row.verification_id, row.model_version)
    )


def purge_expired_attempts(session: Session, now: datetime) -> int:
    from voiceid.storage.fingerprint_repo import purge_expired_fingerprints  # replay fingerprints expire alike

    result = session.execute(delete(AttemptEmbedding).where(AttemptEmbedding.expires_at <= now))
    return int(result.rowcount or 0) + purge_expired_fingerprints(session, now)  # type: ignore[attr-defined]


def erase_attempts(session: Session, speaker_ref: str) -> None:
    session.execute(delete(AttemptEmbedding).where(AttemptEmbedding.speaker_ref == speaker_ref))


# --- watchlist -----------------------------------------------------------------------------


def watchlist_generation(session: Session) -> int:
    return int(session.scalar(select(FraudGeneration.generation).where(FraudGeneration.name == WATCHLIST)) or 0)


def bump_watchlist_generation(session: Session) -> int:
    session.execute(
        update(FraudGeneration)
        .where(FraudGeneration.name == WATCHLIST)
        .values(generation=FraudGeneration.generation + 1)
    )
    return watchlist_generation(session)


def add_watchlist_entry(
    session: Session,
    vault: Vault,
    vector: npt.NDArray[np.float32],
    model_version: str,
    **fields: Any,
) -> WatchlistEntry:
    # Watchlist entries belong to no speaker: each has a data key of its own, destroyed with it.
    row_id = new_id()
    blob = vault.seal_vector(watchlist_owner(row_id), vector, associated_data("watchlist_entry", row_id, model_version))
    row = WatchlistEntry(id=row_id, model_version=model_version, ciphertext=blob, **fields)
    session.add(row)
    session.flush()
    return row


def watchlist_vector(vault: Vault, row: WatchlistEntry) -> npt.NDArray[np.float32]:
    return vault.open_vector(row.ciphertext, associated_data("watchlist_entry", row.id, row.model_version))


def list_watchlist(session: Session) -> Sequence[WatchlistEntry]:
    return session.scalars(select(WatchlistEntry).order_by(WatchlistEntry.created_at.desc(), WatchlistEntry.id)).all()


def get_watchlist_entry(session: Session, entry_id: str) -> WatchlistEntry | None:
    return session.get(WatchlistEntry, entry_id)


def count_watchlist(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(WatchlistEntry)) or 0)


# --- review queue --------------------------------------------------------------------------


def add_review_item(session: Session, **fields: Any) -> ReviewItem:
    row = ReviewItem(id=new_id(), **fields)
    session.add(row)
    session.flush()
    return row


def list_review_items(session: Session, status: str | None, limit: int = 500) -> Sequence[ReviewItem]:
    query = select(ReviewItem)
    if status is not None:
        query = query.where(ReviewItem.status == status)
    return session.scalars(query.order_by(ReviewItem.created_at.desc(), ReviewItem.id).limit(limit)).all()


def get_review_item(session: Session, item_id: str, for_update: bool = False) -> ReviewItem | None:
    query = select(ReviewItem).where(ReviewItem.id == item_id)
    return session.scalars(query.with_for_update() if for_update else query).one_or_none()


def open_review_items(session: Session, speaker_ref: str) -> Sequence[ReviewItem]:
    return session.scalars(
        select(ReviewItem).where(ReviewItem.speaker_ref == speaker_ref, ReviewItem.status == ReviewStatus.OPEN)
    ).all()


# --- fraud desk (0008): pooled watchlist samples, one review item per cause, linked attempts --------


def add_watchlist_sample(
    session: Session,
    vault: Vault,
    entry_id: str,
    vector: npt.NDArray[np.float32],
    model_version: str,
    channel: str | None,
    verification_id: str | None,
    created_at: datetime,
) -> WatchlistSample:
    row_id = new_id()
    # A sample is part of its entry: sealed under the entry's data key, shredded with it.
    blob = vault.seal_vector(
        watchlist_owner(entry_id), vector, associated_data("watchlist_sample", row_id, model_version)
    )
    row = WatchlistSample(
        id=row_id,
        entry_id=entry_id,
        verification_id=verification_id,
        channel=channel,
        model_version=model_version,
        ciphertext=blob,
        created_at=created_at,
    )
    session.add(row)
    session.flush()
    return row


def watchlist_samples(session: Session, entry_id: str) -> Sequence[WatchlistSample]:
    return session.scalars(
        select(WatchlistSample).where(WatchlistSample.entry_id == entry_id).order_by(WatchlistSample.created_at)
    ).all()


def sample_vector(vault: Vault, row: WatchlistSample) -> npt.NDArray[np.float32]:
    return vault.open_vector(row.ciphertext, associated_data("watchlist_sample", row.id, row.model_version))


def sample_for_verification(session: Session, verification_id: str) -> WatchlistSample | None:
    return session.scalars(select(WatchlistSample).where(WatchlistSample.verification_id == verification_id)).first()


def find_watchlist_entry(
    session: Session, label: str, model_version: str, channel: str | None
) -> WatchlistEntry | None:
    """The entry a new flagged call of the voice `label` pools into: same label (case-insensitive),
    same model and channel."""
    return session.scalars(
        select(WatchlistEntry)
        .where(
            func.lower(WatchlistEntry.label) == label.lower(),
            WatchlistEntry.model_version == model_version,
            WatchlistEntry.channel.is_(None) if channel is None else WatchlistEntry.channel == channel,
        )
        .order_by(WatchlistEntry.created_at)
    ).first()


def replace_watchlist_vector(
    session: Session, vault: Vault, row: WatchlistEntry, vector: npt.NDArray[np.float32], samples: int
) -> None:
    row.ciphertext = vault.seal_vector(
        watchlist_owner(row.id), vector, associated_data("watchlist_entry", row.id, row.model_version)
    )
    row.samples = samples
    session.flush()


def delete_watchlist_entry(session: Session, row: WatchlistEntry) -> None:
    """Delete the entry and its pooled samples, and destroy their data key at commit."""
    # Explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only when asked to.
    session.execute(delete(WatchlistSample).where(WatchlistSample.entry_id == row.id))
    mark_for_shredding(session, watchlist_owner(row.id))
    session.delete(row)
    session.flush()


def upsert_review_item(session: Session, **fields: Any) -> tuple[ReviewItem, bool]:
    """One OPEN item per cause (kind, speaker, matched reference): a repeated finding updates the open
    item (best score, latest details) instead of queueing a second one. (item, created)."""
    existing = session.scalars(
        select(ReviewItem).where(
            ReviewItem.kind == fields["kind"],
            ReviewItem.speaker_ref == fields["speaker_ref"],
            ReviewItem.matched_ref == fields["matched_ref"],
            ReviewItem.status == ReviewStatus.OPEN,
        )
    ).first()
    if existing is None or fields.get("status") != ReviewStatus.OPEN:
        return add_review_item(session, **fields), True
    existing.score = max(existing.score, float(fields["score"]))
    existing.details = dict(fields["details"])
    session.flush()
    return existing, False


def open_items_of_kind(session: Session, kind: ReviewKind, since: datetime) -> Sequence[ReviewItem]:
    return session.scalars(
        select(ReviewItem).where(
            ReviewItem.kind == kind, ReviewItem.status == ReviewStatus.OPEN, ReviewItem.created_at >= since
        )
    ).all()


def close_review_items(session: Session, speaker_ref: str, now: datetime, why: str) -> int:
    """Close the OPEN items about an erased speaker: nothing is left to approve or reject."""
    rows = session.scalars(
        select(ReviewItem).where(ReviewItem.speaker_ref == speaker_ref, ReviewItem.status == ReviewStatus.OPEN)
    ).all()
    for row in rows:
        row.status = ReviewStatus.CLOSED
        row.resolved_at = now
        row.resolved_by = why
    session.flush()
    return len(rows)


def erase_speaker_fraud_data(session: Session, speaker_ref: str, now: datetime) -> None:
    """What erasing a speaker means for the fraud workspace: their attempt embeddings go, and the
    review items about them are closed (approving a speaker who no longer exists means nothing)."""
    erase_attempts(session, speaker_ref)
    close_review_items(session, speaker_ref, now, "erasure")


def voiceprint_channels(session: Session, speaker_ids: Sequence[str]) -> dict[str, str | None]:
    """The channel most of each speaker's enrolment audio came through (None when unknown)."""
    votes: dict[str, dict[str, int]] = {}
    for speaker_id, quality in session.execute(
        select(EnrolmentEmbedding.speaker_id, EnrolmentEmbedding.quality).where(
            EnrolmentEmbedding.speaker_id.in_(list(speaker_ids))
        )
    ):
        channel = (quality or {}).get("channel")
        if isinstance(channel, str):
            tally = votes.setdefault(speaker_id, {})
            tally[channel] = tally.get(channel, 0) + 1
    return {sid: max(sorted(t), key=lambda c: t[c]) if t else None for sid, t in votes.items()}


def retained_attempt_meta(
    session: Session, model_version: str, now: datetime, since: datetime | None, limit: int
) -> Sequence[Any]:
    """(verification_id, speaker_ref, channel, decision, created_at) of unexpired attempts of one
    model, newest first, created at or after `since` when given."""
    query = (
        select(
            AttemptEmbedding.verification_id,
            AttemptEmbedding.speaker_ref,
            Verification.channel,
            Verification.decision,
            AttemptEmbedding.created_at,
        )
        .join(Verification, Verification.id == AttemptEmbedding.verification_id)
        .where(AttemptEmbedding.model_version == model_version, AttemptEmbedding.expires_at > now)
    )
    if since is not None:
        query = query.where(AttemptEmbedding.created_at >= since)
    return session.execute(query.order_by(AttemptEmbedding.created_at.desc()).limit(limit)).all()


def count_retained_attempts(session: Session, model_version: str, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AttemptEmbedding)
            .where(AttemptEmbedding.model_version == model_version, AttemptEmbedding.expires_at > now)
        )
        or 0
    )


def attempt_rows(session: Session, verification_ids: Sequence[str]) -> Sequence[AttemptEmbedding]:
    return session.scalars(
        select(AttemptEmbedding).where(AttemptEmbedding.verification_id.in_(list(verification_ids)))
    ).all()


def entry_of_verification(session: Session, verification_id: str) -> WatchlistEntry | None:
    """The watchlist entry an attempt was flagged into, if any."""
    sample = sample_for_verification(session, verification_id)
    if sample is not None:
        return get_watchlist_entry(session, sample.entry_id)
    # Entries flagged before pooling existed carry the verification id on the entry itself.
    return session.scalars(select(WatchlistEntry).where(WatchlistEntry.verification_id == verification_id)).first()


# --- review desk sessions (ReviewSessionRow; services/review_sessions.py) ---------------------------


def add_review_session(session: Session, id_hash: str, key_id: str, now: datetime, expires_at: datetime) -> None:
    """A new desk session; sessions already expired are swept first."""
    session.execute(delete(ReviewSessionRow).where(ReviewSessionRow.expires_at <= now))
    session.add(ReviewSessionRow(id_hash=id_hash, key_id=key_id, created_at=now, expires_at=expires_at))


def review_session_and_key(session: Session, id_hash: str) -> tuple[ReviewSessionRow, ApiKey] | None:
    """The desk session and the API key it was opened with (None: no such session, or no such key)."""
    found = session.execute(
        select(ReviewSessionRow, ApiKey)
        .join(ApiKey, ApiKey.id == ReviewSessionRow.key_id)
        .where(ReviewSessionRow.id_hash == id_hash)
    ).first()
    return None if found is None else (found[0], found[1])


def delete_review_session(session: Session, id_hash: str) -> None:
    session.execute(delete(ReviewSessionRow).where(ReviewSessionRow.id_hash == id_hash))
