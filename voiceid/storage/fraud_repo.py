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

from voiceid.storage.crypto import Cipher, associated_data
from voiceid.storage.models import AttemptEmbedding, FraudGeneration, ReviewItem, WatchlistEntry
from voiceid.storage.repositories import new_id

WATCHLIST = "watchlist"


# --- attempt embeddings ----------------------------------------------------------------------


def add_attempt_embedding(
    session: Session,
    cipher: Cipher,
    verification_id: str,
    speaker_ref: str,
    vector: npt.NDArray[np.float32],
    model_version: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    blob = cipher.encrypt_vector(vector, associated_data("attempt_embedding", verification_id, model_version))
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


def attempt_vector(cipher: Cipher, row: AttemptEmbedding) -> npt.NDArray[np.float32]:
    return cipher.decrypt_vector(
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
    cipher: Cipher,
    vector: npt.NDArray[np.float32],
    model_version: str,
    **fields: Any,
) -> WatchlistEntry:
    row_id = new_id()
    blob = cipher.encrypt_vector(vector, associated_data("watchlist_entry", row_id, model_version))
    row = WatchlistEntry(id=row_id, model_version=model_version, ciphertext=blob, **fields)
    session.add(row)
    session.flush()
    return row


def watchlist_vector(cipher: Cipher, row: WatchlistEntry) -> npt.NDArray[np.float32]:
    return cipher.decrypt_vector(row.ciphertext, associated_data("watchlist_entry", row.id, row.model_version))


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
        select(ReviewItem).where(ReviewItem.speaker_ref == speaker_ref, ReviewItem.status == "OPEN")
    ).all()
